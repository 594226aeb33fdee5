//! One scan request from start to stored results: checks, claim, supersession, fetch, scanners,
//! classification against the target's previous scans, storage. The job directory is removed
//! however the job ends.

use std::collections::HashSet;
use std::time::Instant;

use shared::adapters::dynamodb_projects::rfc3339;
use shared::domain::checkout::Recorded;
use shared::domain::findings::{
    Counts, Finding, FindingState, MAX_FINDINGS_PER_SCAN, ScanError, ScanRecord, ScanState, ScanStats, SkippedEntry,
    Triage, bound, classify, new_scan_id,
};
use shared::domain::fixes::{FixPlan, MAX_FIX_FILE_BYTES, MAX_FIX_FILES, apply_edits};
use shared::domain::integration::IntegrationStatus;
use shared::domain::report::ReportOutcome;
use shared::domain::scan::ScanTarget;
use shared::messages::{ScanCancelled, ScanRequested};
use shared::ports::{PortError, TargetCheck};
use time::OffsetDateTime;

use crate::Deps;
use crate::report::Report;
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

/// A scan id for a request that brought none: its time (so ids still sort by request) and 48 bits
/// of a digest of its scan key and delivery, the same for every redelivery of the message.
fn derived_scan_id(request: &ScanRequested) -> String {
    use sha2::Digest;
    let seed = format!("{}\n{}", request.scan_key(), request.delivery_id.as_deref().unwrap_or_default());
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let mut bits = [0u8; 8];
    bits.copy_from_slice(&digest[..8]);
    new_scan_id(request.requested_at, u64::from_be_bytes(bits))
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
    final_attempt: bool,
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
        // Derived from the message, so a redelivery of it claims with the same id.
        None => derived_scan_id(request),
    };
    // One scan per (project, target, commit), however many deliveries ask.
    let key = request.scan_key();
    let mut scan = match deps.scans.claim(team, id, &key, &scan_id, None).await? {
        None => match deps.scans.scan(team, id, &scan_id).await? {
            Some(existing) if existing.state.is_final() => return Ok(Outcome::Duplicate(scan_id)),
            Some(existing) => existing,
            None => record_for(request, &scan_id),
        },
        Some(holder) => match deps.scans.scan(team, id, &holder).await? {
            Some(existing) if taken_over(&existing) => existing,
            // A scan of this commit that did not succeed (superseded, cancelled, failed) does
            // not stand for a later request: the commit became the head again, or is retried.
            Some(existing) if existing.state.is_final() && existing.state != ScanState::Succeeded => {
                if deps.scans.claim(team, id, &key, &scan_id, Some(&holder)).await?.is_some() {
                    return Ok(Outcome::Duplicate(holder));
                }
                record_for(request, &scan_id)
            }
            // Succeeded, running, or claimed a moment ago by a worker about to record it.
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
    let running = scan.clone();
    let job = Job { request, integration: &integration, project: &project, target_key: &target_key, requested_ms };
    match run(deps, &job, scan, deadline).await {
        // The last delivery before the dead-letter queue: record the failure rather than leave
        // the scan `running`.
        Err(e) if final_attempt => {
            tracing::error!(error = %e, "scan gave up after its last attempt");
            fail(deps, request, running, "unavailable", "The scan could not be completed after repeated attempts.")
                .await
        }
        other => other,
    }
}

/// What a running scan is about.
struct Job<'a> {
    request: &'a ScanRequested,
    integration: &'a shared::domain::integration::Integration,
    project: &'a shared::domain::project::Project,
    target_key: &'a str,
    requested_ms: i64,
}

/// The scan from reading the token to stored results.
async fn run(
    deps: &Deps,
    job: &Job<'_>,
    mut scan: ScanRecord,
    deadline: Option<tokio::time::Instant>,
) -> Result<Outcome, Retry> {
    let (request, integration, project) = (job.request, job.integration, job.project);
    let (team, id) = (&request.team_id, &request.integration_id);
    let (target_key, requested_ms) = (job.target_key, job.requested_ms);
    let stored = match deps.vault.read(&integration.secret_ref).await {
        Ok(stored) => stored,
        Err(PortError::NotFound | PortError::Corrupt(_)) => {
            return fail(deps, request, scan, "token_invalid", "The integration's stored token is missing.").await;
        }
        Err(e) => return Err(e.into()),
    };
    if stored.origin != integration.instance_url {
        return fail(deps, request, scan, "token_invalid", "The stored token belongs to another instance.").await;
    }
    // The report's client, when the integration may write to GitLab at all; a failure to build
    // it costs the report, never the scan.
    let report = match crate::report::writes_allowed(integration) {
        Ok(()) => match deps.source.gateway(integration, stored.token.clone()).await {
            Ok(gitlab) => Some(Report {
                deps,
                request,
                integration,
                gitlab,
                requested_ms,
                project_web_url: project.snapshot.web_url.clone(),
                default_branch: project.snapshot.default_branch.clone(),
            }),
            Err(e) => {
                tracing::warn!(code = e.code, "no GitLab client for the report");
                None
            }
        },
        Err(_) => None,
    };
    if let (Some(report), Some(sha)) = (&report, &request.head_sha) {
        report.pending(sha.as_str()).await;
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
    let work = fetch_and_scan(deps, request, integration, stored.token, &want, &mut scan);
    let outcome = match deadline {
        Some(at) => tokio::time::timeout_at(at, work).await,
        None => Ok(work.await),
    };
    let (findings, fix_plan) = match outcome {
        Err(_) => {
            return fail(deps, request, scan, "timeout", "The scan did not finish in the time a worker has.").await;
        }
        Ok(result) => match result? {
            Ok(scanned) => scanned,
            Err(e) if e.retryable => return Err(Retry::Source(e.message)),
            Err(e) => return fail(deps, request, scan, e.code, &e.message).await,
        },
    };

    // A newer commit may have been asked for while this one was scanned.
    let check = deps.scans.check_target(team, id, request.project_id, target_key, &scan.scan_id, requested_ms).await?;
    if let Some(outcome) = overtaken(deps, request, &scan, check).await? {
        return Ok(outcome);
    }

    let (current, truncated) = bound(findings, MAX_FINDINGS_PER_SCAN);
    let (mut previous, mut reference) = baseline(deps, request).await?;
    // Only what this run could have seen again can be fixed: not the findings of a scanner that
    // failed now, nor, when findings were cut, anything missing from the cut list.
    let ran: HashSet<&str> = scan.scanners.iter().filter(|r| r.state == "succeeded").map(|r| r.name.as_str()).collect();
    previous.retain(|f| ran.contains(f.scanner.as_str()));
    reference.retain(|f| ran.contains(f.scanner.as_str()));
    if truncated {
        let kept: HashSet<&str> = current.iter().map(|f| f.fingerprint.as_str()).collect();
        previous.retain(|f| kept.contains(f.fingerprint.as_str()));
    }
    let mut classified = classify(current, &previous, &reference);
    let on_target: HashSet<String> = reference.iter().map(|f| f.fingerprint.clone()).collect();
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
    scan.report = Some(match &report {
        Some(report) => {
            let finished = report.finished(&scan, &classified, &on_target, &fix_plan);
            match deadline {
                Some(at) => tokio::time::timeout_at(at, finished).await.unwrap_or_else(|_| ReportOutcome {
                    state: "failed".into(),
                    reason: Some("timeout".into()),
                    ..ReportOutcome::default()
                }),
                None => finished.await,
            }
        }
        None => ReportOutcome {
            state: "skipped".into(),
            reason: Some(crate::report::writes_allowed(integration).err().unwrap_or("gitlab_unreachable").into()),
            ..ReportOutcome::default()
        },
    });
    deps.scans.save_scan(team, id, &scan).await?;
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
) -> Result<Result<(Vec<Finding>, FixPlan), SourceError>, Retry> {
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
    let mut fixes = Vec::new();
    if !deps.external.is_empty() {
        let home = job.path().join("home");
        if std::fs::create_dir(&home).is_ok() {
            for external in deps.external.iter() {
                let (found, proposed, run) = run_external(external, &tree.dir, &home, request.project_id).await;
                findings.extend(found);
                fixes.extend(proposed);
                scan.scanners.push(run);
            }
        }
    }
    scan.stats.scan_ms = elapsed_ms(scan_started);
    // The fixes are applied to the files while they are still here; none for a finding that
    // was dismissed or resolved.
    if !fixes.is_empty() {
        let fingerprints: Vec<String> = fixes.iter().map(|(f, _)| f.clone()).collect();
        let triage = deps.scans.triage(&request.team_id, &request.integration_id, &fingerprints).await?;
        fixes.retain(|(f, _)| !matches!(triage.get(f), Some(Triage::Dismissed | Triage::Resolved)));
    }
    let plan = fix_plan(&tree.dir, &fixes);
    if let Err(e) = job.remove() {
        tracing::error!(error = %e, "job directory could not be removed");
    }
    Ok(Ok((findings, plan)))
}

/// The new contents the proposed fixes give, finding by finding: a fix whose edits do not apply
/// (a file missing, not a regular file, too large, not UTF-8, edits outside it or overlapping
/// an earlier fix) is left out whole.
fn fix_plan(tree: &std::path::Path, fixes: &[(String, Vec<shared::domain::sarif::Edit>)]) -> FixPlan {
    let mut plan = FixPlan::default();
    for (fingerprint, edits) in fixes {
        let mut by_path: std::collections::BTreeMap<&str, Vec<&shared::domain::sarif::Edit>> = Default::default();
        for e in edits {
            by_path.entry(e.path.as_str()).or_default().push(e);
        }
        let mut changed = Vec::new();
        for (path, edits) in by_path {
            let current = match plan.files.get(path) {
                Some(text) => Some(text.clone()),
                None => read_fixable(&tree.join(path)),
            };
            match current.and_then(|text| apply_edits(&text, &edits)) {
                Some(text) => changed.push((path.to_owned(), text)),
                None => {
                    changed.clear();
                    break;
                }
            }
        }
        let new_files = changed.iter().filter(|(p, _)| !plan.files.contains_key(p)).count();
        if changed.is_empty() || plan.files.len() + new_files > MAX_FIX_FILES {
            continue;
        }
        plan.files.extend(changed);
        plan.fingerprints.push(fingerprint.clone());
    }
    plan
}

fn read_fixable(path: &std::path::Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FIX_FILE_BYTES as u64 {
        return None;
    }
    String::from_utf8(std::fs::read(path).ok()?).ok()
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

/// What the findings are compared with: the findings still present in the previous succeeded
/// scan of the same target, and for a merge request those of the latest scan of its target
/// branch (which decide `present` over `new`, never `fixed`).
async fn baseline(deps: &Deps, request: &ScanRequested) -> Result<(Vec<Finding>, Vec<Finding>), Retry> {
    let previous = findings_of_last(deps, request, &request.target.key()).await?;
    let reference = match &request.target {
        ScanTarget::MergeRequest { target_branch, .. } => {
            findings_of_last(deps, request, &ScanTarget::Branch { branch: target_branch.clone() }.key()).await?
        }
        ScanTarget::Branch { .. } => Vec::new(),
    };
    Ok((previous, reference))
}

async fn findings_of_last(deps: &Deps, request: &ScanRequested, target_key: &str) -> Result<Vec<Finding>, Retry> {
    let (team, id) = (&request.team_id, &request.integration_id);
    let mut out = Vec::new();
    let Some(last) = deps.scans.last_succeeded(team, id, request.project_id, target_key).await? else {
        return Ok(out);
    };
    let mut cursor: Option<String> = None;
    loop {
        let page = deps.scans.findings(team, id, &last, cursor.as_deref(), 500).await?;
        out.extend(page.items.into_iter().filter(|f| f.state != FindingState::Fixed));
        match page.next {
            Some(next) if out.len() < MAX_FINDINGS_PER_SCAN => cursor = Some(next),
            _ => return Ok(out),
        }
    }
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

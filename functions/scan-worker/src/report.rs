//! The report into GitLab after a scan: the commit status on the scanned commit, and for a merge
//! request one summary note kept current and inline threads on the lines that brought findings
//! in, resolved when they go. One run at a time per merge request (a lease on its report
//! state), never a report of an older scan over a newer one, nothing written that is already
//! there. Read-only tokens write nothing; a write GitLab refuses for want of scope turns the
//! capability off on the integration and is not tried again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shared::domain::findings::{Finding, FindingState, ScanRecord, Triage};
use shared::domain::fixes::{FixPlan, fix_branch};
use shared::domain::gitlab::GitlabError;
use shared::domain::integration::{Integration, Warning};
use shared::domain::report::{
    DISMISSED_REPLY, EXPORTS_PER_RUN, MAX_EXPORTED, ReportInput, ReportOutcome, ReportState, THREADS_PER_RUN,
    ThreadState, added_lines, fix_description, fix_digest, fixed_reply, is_open, status_for, summary, summary_digest,
    summary_marker, thread_body, vulnerability_export,
};
use shared::domain::scan::ScanTarget;
use shared::messages::ScanRequested;
use shared::ports::{LinePosition, MergeRequestGateway, PortError, ReportKey};
use time::OffsetDateTime;

use crate::Deps;

/// How long one run may hold a merge request's report.
const LEASE: Duration = Duration::from_secs(120);
/// How long a run waits for another run's lease before giving up.
const LEASE_WAIT: Duration = Duration::from_secs(30);
/// GitLab.com's limit on notes per minute (gitlab-api.md 3.2), kept per integration.
pub const NOTES_PER_MINUTE: u32 = 60;
/// Longest wait for a rate limit (GitLab's `Retry-After`, or the next minute's note budget).
const MAX_RATE_WAIT: Duration = Duration::from_secs(60);
/// Files of a merge request diff read for thread positions.
const MAX_DIFF_FILES: usize = 300;

/// Why a report stopped.
enum Stop {
    /// GitLab refused for want of scope (`insufficient_scope`).
    Scope,
    /// GitLab refused for want of role.
    Forbidden,
    /// Still rate limited after waiting.
    RateLimited,
    /// Anything else from GitLab or the network.
    Gitlab,
    /// The report state could not be kept.
    Store(PortError),
}

impl Stop {
    fn reason(&self) -> &'static str {
        match self {
            Stop::Scope => "insufficient_scope",
            Stop::Forbidden => "forbidden",
            Stop::RateLimited => "rate_limited",
            Stop::Gitlab => "gitlab_error",
            Stop::Store(_) => "store_unavailable",
        }
    }
}

impl From<PortError> for Stop {
    fn from(e: PortError) -> Self {
        Stop::Store(e)
    }
}

fn stop_for(e: &GitlabError) -> Stop {
    match e {
        GitlabError::InsufficientScope { .. } => Stop::Scope,
        GitlabError::Forbidden => Stop::Forbidden,
        GitlabError::RateLimited { .. } => Stop::RateLimited,
        _ => Stop::Gitlab,
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Everything one report run needs.
pub struct Report<'a> {
    /// The worker's dependencies.
    pub deps: &'a Deps,
    /// The request the scan answered.
    pub request: &'a ScanRequested,
    /// Its integration.
    pub integration: &'a Integration,
    /// GitLab, with the integration's token.
    pub gitlab: Arc<dyn MergeRequestGateway>,
    /// Request time of the scan (ms): the order of reports.
    pub requested_ms: i64,
    /// The project's web URL as stored from GitLab (links to lines start here).
    pub project_web_url: String,
    /// The project's default branch, as last synced.
    pub default_branch: Option<String>,
}

/// Whether the integration may and wants to write anything at all.
pub fn writes_allowed(integration: &Integration) -> Result<(), &'static str> {
    let r = &integration.report;
    if !integration.capabilities.comment {
        return Err("read_only");
    }
    if !(r.comment || r.inline_threads || r.commit_status || r.fix_merge_requests || r.vulnerability_export) {
        return Err("disabled");
    }
    Ok(())
}

impl Report<'_> {
    /// Marks the commit `pending` before the scan starts (commit statuses enabled and allowed).
    pub async fn pending(&self, sha: &str) {
        if writes_allowed(self.integration).is_err() || !self.integration.report.commit_status {
            return;
        }
        let result =
            self.gitlab.set_status(self.request.project_id, sha, "pending", "Scanning for secrets", None).await;
        if let Err(e) = result {
            self.refused(&e).await;
            tracing::warn!(error = %e, "pending commit status not written");
        }
    }

    /// Writes what the finished scan found, and says how that went.
    pub async fn finished(
        &self,
        scan: &ScanRecord,
        findings: &[Finding],
        on_target: &HashSet<String>,
        plan: &FixPlan,
    ) -> ReportOutcome {
        if let Err(reason) = writes_allowed(self.integration) {
            return outcome("skipped", Some(reason), 0);
        }
        let Some(sha) = scan.sha.as_ref().map(|s| s.as_str().to_owned()) else {
            return outcome("skipped", Some("no_commit"), 0);
        };
        let id = &self.request.integration_id;
        let target_key = self.request.target.key();
        let key =
            ReportKey { team: &self.request.team_id, id, project_id: self.request.project_id, target_key: &target_key };
        let holder = scan.scan_id.as_str();
        let waited_until = tokio::time::Instant::now() + LEASE_WAIT;
        let mut state = loop {
            let now = now_ms();
            let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
            match self.deps.reports.lease_report(&key, holder, now, now + lease).await {
                Ok(Some(state)) => break state,
                Ok(None) if tokio::time::Instant::now() < waited_until => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(None) => return outcome("failed", Some("busy"), 0),
                Err(e) => {
                    tracing::warn!(error.message = %e, "report state unavailable");
                    return outcome("failed", Some("store_unavailable"), 0);
                }
            }
        };
        let mut writes = 0u32;
        let mut export = (0u32, None);
        let result = if state.reported_ms > self.requested_ms {
            Ok(false)
        } else {
            let input = ReportInput {
                integration_id: id.as_str(),
                project_web_url: &self.project_web_url,
                sha: &sha,
                findings,
                on_target,
                truncated: scan.truncated,
            };
            let done = self.write(&input, plan, &mut state, &mut writes).await;
            if done.is_ok() {
                state.reported_ms = self.requested_ms;
            }
            // Apart from the rest: its failures never cost the merge request report.
            if self.exports() {
                export = self.export(&input, &mut state).await;
            }
            done.map(|()| true)
        };
        if let Err(e) = self.deps.reports.save_report(&key, holder, &state).await {
            tracing::warn!(error.message = %e, "report state not saved");
        }
        let mut done = match result {
            Ok(false) => outcome("skipped", Some("newer_report"), writes),
            Ok(true) => outcome(if writes > 0 || export.0 > 0 { "written" } else { "unchanged" }, None, writes),
            Err(stop) => {
                if let Stop::Store(e) = &stop {
                    tracing::warn!(error.message = %e, "report stopped: store unavailable");
                }
                outcome("failed", Some(stop.reason()), writes)
            }
        };
        done.vulnerabilities_exported = export.0;
        done.export_error = export.1.map(str::to_owned);
        done
    }

    /// Whether this scan's new findings go to GitLab's vulnerability report: turned on, and a
    /// scan of the project's default branch (merge request code is not in the project yet).
    fn exports(&self) -> bool {
        self.integration.report.vulnerability_export
            && matches!(&self.request.target, ScanTarget::Branch { branch } if Some(branch) == self.default_branch.as_ref())
    }

    /// Exports the open new findings not exported before; stops at the first refusal and says
    /// why. The count is of this run's exports.
    async fn export(&self, input: &ReportInput<'_>, state: &mut ReportState) -> (u32, Option<&'static str>) {
        let mut exported = 0;
        let pending: Vec<&Finding> = input
            .findings
            .iter()
            .filter(|f| f.state == FindingState::New && is_open(f) && !state.exported.contains(&f.fingerprint))
            .take(EXPORTS_PER_RUN)
            .collect();
        for f in pending {
            if state.exported.len() >= MAX_EXPORTED {
                return (exported, Some("too_many"));
            }
            let v = vulnerability_export(f, input.project_web_url, input.sha);
            match self.call_raw(|| self.gitlab.create_vulnerability(self.request.project_id, &v)).await {
                Ok(_) => {
                    exported += 1;
                    state.exported.insert(f.fingerprint.clone());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "vulnerability export refused");
                    let reason = match e {
                        GitlabError::Forbidden | GitlabError::InsufficientScope { .. } => "not_available",
                        GitlabError::RateLimited { .. } => "rate_limited",
                        _ => "gitlab_error",
                    };
                    return (exported, Some(reason));
                }
            }
        }
        (exported, None)
    }

    /// The writes themselves, each only when what GitLab has differs from what should be there.
    async fn write(
        &self,
        input: &ReportInput<'_>,
        plan: &FixPlan,
        state: &mut ReportState,
        writes: &mut u32,
    ) -> Result<(), Stop> {
        let settings = self.integration.report;
        let project_id = self.request.project_id;
        // The branch a fix merge request goes into: the merge request's source branch (while the
        // merge request is open), or the scanned branch.
        let mut fix_target = match &self.request.target {
            ScanTarget::Branch { branch } => Some(branch.clone()),
            ScanTarget::MergeRequest { .. } => None,
        };
        if let ScanTarget::MergeRequest { iid, .. } = &self.request.target {
            let iid = *iid;
            let mr = self.call(|| self.gitlab.merge_request(project_id, iid)).await?;
            // Comments only on a merge request still open; the status goes on regardless.
            if mr.state == "opened" {
                fix_target = Some(mr.source_branch.clone()).filter(|b| !b.is_empty());
                if settings.comment {
                    self.summary(iid, input, state, writes).await?;
                }
                if settings.inline_threads {
                    self.threads(iid, &mr, input, state, writes).await?;
                }
            }
        }
        if settings.fix_merge_requests && self.integration.capabilities.open_merge_requests {
            self.fix_merge_request(fix_target.as_deref(), input, plan, state, writes).await?;
        }
        if settings.commit_status {
            let (status, description) = status_for(input.introduced().count());
            let wanted = (input.sha.to_owned(), status.to_owned(), description.clone());
            if state.status.as_ref() != Some(&wanted) {
                self.call(|| self.gitlab.set_status(project_id, input.sha, status, &description, None)).await?;
                *writes += 1;
                state.status = Some(wanted);
            }
        }
        Ok(())
    }

    async fn summary(
        &self,
        iid: u64,
        input: &ReportInput<'_>,
        state: &mut ReportState,
        writes: &mut u32,
    ) -> Result<(), Stop> {
        let project_id = self.request.project_id;
        let id = self.request.integration_id.as_str();
        let wanted = summary(input);
        if state.note_id.is_none() {
            // Written by an earlier run whose state was lost, or by a run that died before
            // saving: found again by its marker and author.
            let marker = summary_marker(id);
            if let Some(found) =
                self.call(|| self.gitlab.find_note(project_id, iid, self.integration.user.id, &marker)).await?
            {
                state.note_id = Some(found.id);
                state.digest = summary_digest(&found.body, id).map(str::to_owned);
            }
        }
        if state.digest.as_deref() == Some(wanted.digest.as_str()) && state.note_id.is_some() {
            return Ok(());
        }
        self.note_budget().await?;
        let updated = match state.note_id {
            Some(note_id) => {
                match self.call_raw(|| self.gitlab.update_note(project_id, iid, note_id, &wanted.body)).await {
                    Ok(()) => true,
                    // Deleted by someone: written again below.
                    Err(GitlabError::NotFound) => false,
                    Err(e) => return Err(self.fail(&e).await),
                }
            }
            None => false,
        };
        if !updated {
            state.note_id = Some(self.call(|| self.gitlab.create_note(project_id, iid, &wanted.body)).await?);
        }
        *writes += 1;
        state.digest = Some(wanted.digest);
        Ok(())
    }

    async fn threads(
        &self,
        iid: u64,
        mr: &shared::ports::MergeRequestInfo,
        input: &ReportInput<'_>,
        state: &mut ReportState,
        writes: &mut u32,
    ) -> Result<(), Stop> {
        let project_id = self.request.project_id;
        let by_fp: BTreeMap<&str, &Finding> = input.findings.iter().map(|f| (f.fingerprint.as_str(), f)).collect();
        // Close the threads whose finding is gone (fixed) or dismissed; a dismissed thread stays
        // resolved for good.
        for (fp, thread) in state.threads.iter_mut() {
            if thread.resolved {
                continue;
            }
            let finding = by_fp.get(fp.as_str());
            let reply = match finding {
                Some(f) if f.triage == Triage::Dismissed => DISMISSED_REPLY.to_owned(),
                Some(f) if f.state != FindingState::Fixed => continue,
                _ => fixed_reply(input.sha),
            };
            self.note_budget().await?;
            self.call(|| self.gitlab.reply_and_resolve(project_id, iid, &thread.discussion_id, &reply)).await?;
            *writes += 1;
            thread.resolved = true;
            thread.dismissed = finding.is_some_and(|f| f.triage == Triage::Dismissed);
        }
        // New threads only against the version that was scanned.
        let Some(refs) = mr.diff_refs.clone().filter(|r| r.head_sha == input.sha) else {
            return Ok(());
        };
        let candidates: Vec<&Finding> = input
            .introduced()
            .filter(|f| f.state == FindingState::New && !state.threads.contains_key(&f.fingerprint))
            .take(THREADS_PER_RUN)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let diffs = self.call(|| self.gitlab.diffs(project_id, iid, MAX_DIFF_FILES)).await?;
        let added: BTreeMap<&str, (&str, BTreeSet<u32>)> = diffs
            .iter()
            .filter(|d| !d.deleted_file)
            .map(|d| (d.new_path.as_str(), (d.old_path.as_str(), added_lines(&d.diff))))
            .collect();
        for f in candidates {
            // Findings on lines the merge request did not add are in the summary only.
            let Some((old_path, lines)) = added.get(f.path.as_str()) else { continue };
            if !lines.contains(&f.line) {
                continue;
            }
            let position = LinePosition {
                refs: refs.clone(),
                old_path: (*old_path).to_owned(),
                new_path: f.path.clone(),
                new_line: f.line,
            };
            self.note_budget().await?;
            let body = thread_body(f, input.sha);
            let discussion_id = self.call(|| self.gitlab.create_thread(project_id, iid, &body, &position)).await?;
            *writes += 1;
            state
                .threads
                .insert(f.fingerprint.clone(), ThreadState { discussion_id, resolved: false, dismissed: false });
        }
        Ok(())
    }

    /// The fix merge request: the proposed fixes of open findings committed on the target's own
    /// fix branch (started afresh from the scanned commit each time they change), the merge
    /// request opened or updated; closed when no such finding is left (or the merge request it
    /// fixes is no longer open).
    async fn fix_merge_request(
        &self,
        target: Option<&str>,
        input: &ReportInput<'_>,
        plan: &FixPlan,
        state: &mut ReportState,
        writes: &mut u32,
    ) -> Result<(), Stop> {
        let project_id = self.request.project_id;
        let wanted: Vec<&Finding> =
            input.findings.iter().filter(|f| is_open(f) && plan.fingerprints.contains(&f.fingerprint)).collect();
        let Some(target) = target.filter(|_| !wanted.is_empty() && !plan.files.is_empty()) else {
            if let Some(iid) = state.fix_mr_iid {
                self.call(|| self.gitlab.close_merge_request(project_id, iid)).await?;
                *writes += 1;
                state.fix_mr_iid = None;
                state.fix_digest = None;
            }
            return Ok(());
        };
        let digest = fix_digest(input.sha, plan);
        if state.fix_mr_iid.is_some() && state.fix_digest.as_deref() == Some(digest.as_str()) {
            return Ok(());
        }
        let branch = fix_branch(project_id, target);
        let (title, description) = fix_description(&wanted, input.sha);
        self.call(|| self.gitlab.commit_files(project_id, &branch, input.sha, &title, &plan.files)).await?;
        *writes += 1;
        let iid =
            self.call(|| self.gitlab.open_merge_request(project_id, &branch, target, &title, &description)).await?;
        *writes += 1;
        state.fix_mr_iid = Some(iid);
        state.fix_digest = Some(digest);
        Ok(())
    }

    /// One note from the integration's per-minute budget, waiting for the next minute once.
    async fn note_budget(&self) -> Result<(), Stop> {
        let (team, id) = (&self.request.team_id, &self.request.integration_id);
        for _ in 0..2 {
            let now = OffsetDateTime::now_utc();
            let minute = now.unix_timestamp() / 60;
            if self.deps.reports.take_note_budget(team, id, minute, NOTES_PER_MINUTE).await? {
                return Ok(());
            }
            let wait = 60 - u64::try_from(now.unix_timestamp() % 60).unwrap_or(0);
            tracing::info!(wait_s = wait, "note budget spent for this minute; waiting");
            tokio::time::sleep(Duration::from_secs(wait).min(MAX_RATE_WAIT)).await;
        }
        Err(Stop::RateLimited)
    }

    /// One GitLab call: a 429 is waited out once (`Retry-After`, at most a minute); a refusal
    /// for want of scope turns the capability off on the integration.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Stop>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, GitlabError>>,
    {
        match self.call_raw(f).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(&e).await),
        }
    }

    /// The call with a 429 waited out once.
    async fn call_raw<T, F, Fut>(&self, f: F) -> Result<T, GitlabError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, GitlabError>>,
    {
        let mut waited = false;
        loop {
            // The instance's own limit, as its last answer told it.
            if let Some(wait) = self.gitlab.pause() {
                tracing::info!(
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "GitLab rate limit nearly spent; waiting"
                );
                tokio::time::sleep(wait).await;
            }
            match f().await {
                Err(GitlabError::RateLimited { retry_after }) if !waited => {
                    waited = true;
                    let wait = retry_after.unwrap_or(Duration::from_secs(5)).min(MAX_RATE_WAIT);
                    tracing::info!(wait_s = wait.as_secs(), "GitLab rate limit; waiting");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn fail(&self, e: &GitlabError) -> Stop {
        self.refused(e).await;
        tracing::warn!(error = %e, "GitLab refused a report call");
        stop_for(e)
    }

    /// A 403 `insufficient_scope` means the token cannot write: shown on the integration, and
    /// no later scan tries again until the token is verified or replaced.
    async fn refused(&self, e: &GitlabError) {
        if !matches!(e, GitlabError::InsufficientScope { .. }) {
            return;
        }
        let warning = Warning {
            code: "comment_refused".into(),
            message: "GitLab refused to let the token write to merge requests (insufficient_scope); reports are off until the token is verified again or replaced with one that has the api scope.".into(),
        };
        let (team, id) = (&self.request.team_id, &self.request.integration_id);
        if let Err(err) = self.deps.reports.downgrade(team, id, "comment", &warning, OffsetDateTime::now_utc()).await {
            tracing::warn!(error.message = %err, "capability downgrade not stored");
        }
    }
}

fn outcome(state: &str, reason: Option<&str>, writes: u32) -> ReportOutcome {
    ReportOutcome { state: state.to_owned(), reason: reason.map(str::to_owned), writes, ..ReportOutcome::default() }
}

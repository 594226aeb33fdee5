//! What the connector writes into a merge request, as text: the summary note (one per merge
//! request and integration, found again by a hidden marker), the inline thread bodies, the commit
//! status, and the rule that keeps untrusted text inert.
//!
//! Untrusted text (paths, rule ids and messages from scanners, branch names) only ever appears
//! inside an inline code span built by [`inert`]: on one line, without control or hidden
//! characters, fenced by more backticks than it contains. GitLab does not run quick actions from
//! a line that does not start with `/`, and renders no mention, reference, link or HTML inside a
//! code span (security policy 8.5), so nothing a repository or a scanner says can act.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::findings::{Finding, FindingState, Triage};
use super::secrets::Severity;
use super::text::is_hidden_format;

/// The commit status's name (GitLab's `name`/`context`), what merge checks refer to.
pub const STATUS_NAME: &str = "gitlab-connector/secrets";
/// New findings listed by name in the summary; the rest are counted.
pub const SUMMARY_LISTED: usize = 50;
/// Inline threads opened per merge request in one run (each is a GitLab note).
pub const THREADS_PER_RUN: usize = 20;
/// Characters of untrusted text kept in one code span.
const MAX_INERT_CHARS: usize = 200;

const SUMMARY_MARKER: &str = "<!-- gitlab-connector:summary integration=";
const THREAD_MARKER: &str = "<!-- gitlab-connector:finding ";

/// `text` as an inline code span that renders exactly as the text and acts as nothing: control,
/// bidirectional and zero-width characters removed, line breaks folded into spaces, at most
/// `MAX_INERT_CHARS` characters, fenced by one backtick more than the longest run inside.
pub fn inert(text: &str) -> String {
    let mut clean = String::with_capacity(text.len().min(MAX_INERT_CHARS * 4));
    let mut kept = 0;
    for c in text.chars() {
        if kept == MAX_INERT_CHARS {
            clean.push('…');
            break;
        }
        let c = match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || is_hidden_format(c) => continue,
            c => c,
        };
        clean.push(c);
        kept += 1;
    }
    if clean.trim().is_empty() {
        return "` `".to_owned();
    }
    let longest = clean.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    // CommonMark strips one space from each end when both are spaces, so a span that starts or
    // ends with a backtick (or a space) keeps its text.
    let pad = if clean.starts_with(['`', ' ']) || clean.ends_with(['`', ' ']) { " " } else { "" };
    format!("{fence}{pad}{clean}{pad}{fence}")
}

/// `https://host/group/project/-/blob/<sha>/<path>#L<line>`: every byte of the path outside
/// the unreserved set and `/` is percent-encoded, so the URL cannot end early or carry markup.
pub fn blob_url(project_web_url: &str, sha: &str, path: &str, line: u32) -> String {
    let mut encoded = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/-/blob/{sha}/{encoded}#L{line}", project_web_url.trim_end_matches('/'))
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}

/// Whether a finding still asks for attention (dismissed and resolved ones do not).
pub fn is_open(f: &Finding) -> bool {
    f.state != FindingState::Fixed && !matches!(f.triage, Triage::Dismissed | Triage::Resolved)
}

/// What one merge request report is made from.
#[derive(Clone, Debug)]
pub struct ReportInput<'a> {
    /// The integration whose note this is (part of the marker).
    pub integration_id: &'a str,
    /// The project's web URL (`https://host/group/project`), from GitLab.
    pub project_web_url: &'a str,
    /// The scanned commit.
    pub sha: &'a str,
    /// The scan's findings, classified and ordered for display.
    pub findings: &'a [Finding],
    /// Fingerprints also found on the target branch: not this merge request's doing.
    pub on_target: &'a HashSet<String>,
    /// Whether the scan kept only part of its findings.
    pub truncated: bool,
}

impl ReportInput<'_> {
    /// Open findings this merge request brought in (not on the target branch).
    pub fn introduced(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| is_open(f) && !self.on_target.contains(&f.fingerprint))
    }
}

/// The summary note: its whole body and the digest of its content, which the marker carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The note's body, marker first.
    pub body: String,
    /// 16 hex digits of SHA-256 over the content after the marker.
    pub digest: String,
}

/// The marker every summary of `integration_id` starts with.
pub fn summary_marker(integration_id: &str) -> String {
    format!("{SUMMARY_MARKER}{integration_id} ")
}

/// The digest in a summary body written for `integration_id`; `None` for any other body.
pub fn summary_digest<'a>(body: &'a str, integration_id: &str) -> Option<&'a str> {
    let rest = body.strip_prefix(&summary_marker(integration_id))?;
    let digest = rest.strip_prefix("digest=")?.split(' ').next()?;
    (digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

/// Builds the summary: new findings first (by name, with links to their lines at the scanned
/// commit), then the counts of present and fixed ones. It names rules, paths and lines only:
/// not even the redacted prefix of a secret.
pub fn summary(input: &ReportInput<'_>) -> Summary {
    let new: Vec<&Finding> = input.findings.iter().filter(|f| f.state == FindingState::New).collect();
    let present = input.findings.iter().filter(|f| f.state == FindingState::Present).count();
    let fixed = input.findings.iter().filter(|f| f.state == FindingState::Fixed).count();
    let introduced = input.introduced().count();
    let short = &input.sha[..input.sha.len().min(8)];
    let mut content = String::new();
    content.push_str(&match introduced {
        0 => "### gitlab-connector: no open findings introduced\n\n".to_owned(),
        1 => "### gitlab-connector: 1 open finding introduced\n\n".to_owned(),
        n => format!("### gitlab-connector: {n} open findings introduced\n\n"),
    });
    content.push_str(&format!("Scanned commit `{short}`: **{} new**, {present} present, {fixed} fixed.\n", new.len()));
    if !new.is_empty() {
        content.push_str("\n#### New\n\n");
        for f in new.iter().take(SUMMARY_LISTED) {
            let triage = match f.triage {
                Triage::Dismissed => " (dismissed)",
                Triage::Resolved => " (resolved)",
                Triage::Confirmed => " (confirmed)",
                Triage::Open => "",
            };
            let place = format!("{}:{}", f.path, f.line);
            content.push_str(&format!(
                "- **{}** {} {} at [{}]({}){triage}\n",
                severity_word(f.severity),
                inert(&f.rule_id),
                inert(&f.message),
                inert(&place),
                blob_url(input.project_web_url, input.sha, &f.path, f.line),
            ));
        }
        if new.len() > SUMMARY_LISTED {
            content.push_str(&format!("- and {} more\n", new.len() - SUMMARY_LISTED));
        }
    }
    if present > 0 || fixed > 0 {
        content.push_str(&format!(
            "\n{present} finding{} still present (seen before this commit), {fixed} fixed by it.\n",
            if present == 1 { "" } else { "s" }
        ));
    }
    if input.truncated {
        content.push_str("\nThe scan kept only the most severe findings; counts are a lower bound.\n");
    }
    content.push_str("\n<sub>Secrets are never shown here. This comment is kept up to date on each push.</sub>\n");
    let digest = hex16(&Sha256::digest(content.as_bytes()));
    Summary { body: format!("{}digest={digest} -->\n{content}", summary_marker(input.integration_id)), digest }
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The first note of an inline thread about `f`, marked with its fingerprint.
pub fn thread_body(f: &Finding, sha: &str) -> String {
    let short = &sha[..sha.len().min(8)];
    format!(
        "{THREAD_MARKER}fingerprint={} -->\n**{}** {} {}\n\nFound in commit `{short}`. The value is not shown. If this is a real credential, rotate it: removing it from the code does not remove it from the history.\n",
        f.fingerprint,
        severity_word(f.severity),
        inert(&f.rule_id),
        inert(&f.message),
    )
}

/// The fingerprint in a thread's first note written by the connector.
pub fn thread_fingerprint(body: &str) -> Option<&str> {
    let rest = body.strip_prefix(THREAD_MARKER)?.strip_prefix("fingerprint=")?;
    let fp = rest.split(' ').next()?;
    super::findings::is_fingerprint(fp).then_some(fp)
}

/// The reply that closes a thread whose finding is gone.
pub fn fixed_reply(sha: &str) -> String {
    format!("Fixed in commit `{}`: the finding is no longer present.", &sha[..sha.len().min(8)])
}

/// The reply that closes a thread whose finding was dismissed.
pub const DISMISSED_REPLY: &str = "Dismissed in gitlab-connector: this thread stays resolved.";

/// The commit status for a finished scan: `failed` when the merge request brings in open
/// findings, else `success`; the description counts them.
pub fn status_for(introduced: usize) -> (&'static str, String) {
    match introduced {
        0 => ("success", "No open findings introduced".to_owned()),
        1 => ("failed", "1 open finding introduced".to_owned()),
        n => ("failed", format!("{n} open findings introduced")),
    }
}

/// The lines a unified diff adds to the new file (`+` lines), the only ones an inline thread
/// may be opened on as a new-line position. Malformed hunk headers end the parse.
pub fn added_lines(diff: &str) -> BTreeSet<u32> {
    let mut added = BTreeSet::new();
    let mut new_line: Option<u32> = None;
    for line in diff.lines() {
        if let Some(header) = line.strip_prefix("@@ ") {
            new_line = hunk_new_start(header);
            if new_line.is_none() {
                break;
            }
            continue;
        }
        let Some(n) = new_line.as_mut() else { continue };
        match line.as_bytes().first() {
            Some(b'+') => {
                added.insert(*n);
                *n += 1;
            }
            Some(b'-') => {}
            Some(b'\\') => {} // "\ No newline at end of file"
            _ => *n += 1,
        }
    }
    added
}

/// `-a,b +c,d @@ …` → `c`.
fn hunk_new_start(header: &str) -> Option<u32> {
    let plus = header.split(' ').find(|p| p.starts_with('+'))?;
    plus[1..].split(',').next()?.parse().ok()
}

/// Per-integration switches for what is written to GitLab. Every switch only narrows what the
/// token's capabilities allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportSettings {
    /// The summary note on merge requests.
    pub comment: bool,
    /// Inline threads on the added lines of new findings.
    pub inline_threads: bool,
    /// The `gitlab-connector/secrets` commit status on scanned commits.
    pub commit_status: bool,
    /// A merge request applying the fixes scanners propose.
    pub fix_merge_requests: bool,
    /// New findings of default-branch scans exported into GitLab's vulnerability report
    /// (GitLab Ultimate; off unless turned on).
    pub vulnerability_export: bool,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            comment: true,
            inline_threads: true,
            commit_status: true,
            fix_merge_requests: true,
            vulnerability_export: false,
        }
    }
}

/// A thread the connector opened, as the report state remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    /// GitLab's discussion id.
    pub discussion_id: String,
    /// Whether the connector resolved it.
    pub resolved: bool,
    /// Whether it was resolved because the finding was dismissed (never reopened).
    #[serde(default)]
    pub dismissed: bool,
}

/// What the connector last wrote to one merge request (or branch), kept between runs so that
/// nothing is written twice and older scans never overwrite newer reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    /// The summary note's id.
    #[serde(default)]
    pub note_id: Option<u64>,
    /// The digest of the summary as last written.
    #[serde(default)]
    pub digest: Option<String>,
    /// Request time (ms) of the newest scan reported; older scans report nothing.
    #[serde(default)]
    pub reported_ms: i64,
    /// Threads by fingerprint.
    #[serde(default)]
    pub threads: std::collections::BTreeMap<String, ThreadState>,
    /// The last commit status written: `(sha, state, description)`.
    #[serde(default)]
    pub status: Option<(String, String, String)>,
    /// The fix merge request the connector opened for this target, while open.
    #[serde(default)]
    pub fix_mr_iid: Option<u64>,
    /// Digest of the fixes last committed to it.
    #[serde(default)]
    pub fix_digest: Option<String>,
    /// Fingerprints already exported as GitLab vulnerabilities.
    #[serde(default)]
    pub exported: BTreeSet<String>,
}

/// Fingerprints a target's report remembers as exported, at most.
pub const MAX_EXPORTED: usize = 5_000;
/// Vulnerabilities exported per scan.
pub const EXPORTS_PER_RUN: usize = 50;

/// One finding as GitLab's `vulnerabilityCreate` input takes it. The identifier is
/// `gitlab-connector:<fingerprint>`: GitLab stores it with the external type `other` and the
/// name as external id (`ee/app/services/vulnerabilities/create_service_base.rb`), which is how
/// its vulnerability events name it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VulnerabilityExport {
    /// Title.
    pub name: String,
    /// Plain text: rule, location, no secret.
    pub description: String,
    /// `CRITICAL` … `INFO`.
    pub severity: &'static str,
    /// Scanner id and name.
    pub scanner_id: String,
    /// Scanner name.
    pub scanner_name: String,
    /// `gitlab-connector:<fingerprint>`.
    pub identifier: String,
    /// The line at the scanned commit.
    pub url: String,
}

/// The export of one finding found at `sha` of the project at `project_web_url`.
pub fn vulnerability_export(f: &Finding, project_web_url: &str, sha: &str) -> VulnerabilityExport {
    let severity = match f.severity {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Info => "INFO",
    };
    let clean = |s: &str, max: usize| -> String {
        s.chars().filter(|c| !c.is_control() && !is_hidden_format(*c)).take(max).collect()
    };
    VulnerabilityExport {
        name: clean(&format!("{}: {}", f.rule_id, f.message), 255),
        description: clean(
            &format!("Found by {} at {} line {} in commit {sha}. The value is not shown.", f.scanner, f.path, f.line),
            2_000,
        ),
        severity,
        scanner_id: format!("gitlab-connector-{}", clean(&f.scanner, 60)),
        scanner_name: clean(&f.scanner, 60),
        identifier: format!("{}:{}", super::findings::GITLAB_IDENTIFIER_TYPE, f.fingerprint),
        url: blob_url(project_web_url, sha, &f.path, f.line),
    }
}

/// 16 hex digits identifying a fix plan at a commit: the same fixes on the same commit are
/// not committed again.
pub fn fix_digest(sha: &str, plan: &crate::domain::fixes::FixPlan) -> String {
    let mut h = Sha256::new();
    h.update(sha.as_bytes());
    for (path, content) in &plan.files {
        h.update([0]);
        h.update(path.as_bytes());
        h.update([0]);
        h.update(content.as_bytes());
    }
    hex16(&h.finalize())
}

/// The fix merge request's title and description. The description names findings by rule and
/// location as inert code spans.
pub fn fix_description(findings: &[&Finding], sha: &str) -> (String, String) {
    let title = match findings.len() {
        1 => "gitlab-connector: apply 1 proposed fix".to_owned(),
        n => format!("gitlab-connector: apply {n} proposed fixes"),
    };
    let mut body = format!(
        "Fixes proposed by the scanners for commit `{}`. Review them before merging; this merge request is updated on later scans and closed when its findings are gone.\n\n",
        &sha[..sha.len().min(8)]
    );
    for f in findings.iter().take(SUMMARY_LISTED) {
        body.push_str(&format!(
            "- {} {} at {}\n",
            inert(&f.scanner),
            inert(&f.rule_id),
            inert(&format!("{}:{}", f.path, f.line))
        ));
    }
    (title, body)
}

/// What a scan's report came to, kept on the scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportOutcome {
    /// `written` (something changed in GitLab), `unchanged`, `skipped` or `failed`.
    pub state: String,
    /// Why it was skipped or failed: `read_only`, `disabled`, `insufficient_scope`,
    /// `forbidden`, `rate_limited`, `gitlab_error`, `busy`, `newer_report`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// GitLab writes made (notes, threads, statuses).
    #[serde(default)]
    pub writes: u32,
    /// Findings exported into GitLab's vulnerability report by this scan.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vulnerabilities_exported: u32,
    /// Why the export stopped (`not_available`: no Ultimate or no permission; `gitlab_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;

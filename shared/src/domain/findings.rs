//! Scans and their findings: what a scan found, how each finding relates to the previous scans of
//! the same target (`new`, `present`, `fixed`), the triage a person or GitLab gave it, and the
//! record of a scan as the api shows it. Pure: the worker and the api share these rules.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sarif::SarifFinding;
use super::scan::{CommitSha, ScanTarget, ScanTrigger};
use super::secrets::{SecretFinding, Severity};

/// Findings kept per scan; beyond this the scan is marked truncated (most severe kept).
pub const MAX_FINDINGS_PER_SCAN: usize = 2_000;

/// Scanner name of the built-in secret scanner.
pub const BUILTIN_SCANNER: &str = "builtin";

/// Where a finding stands relative to the previous scans of its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingState {
    /// Not in the baseline.
    New,
    /// Also in the baseline.
    Present,
    /// In the baseline, gone now.
    Fixed,
}

/// What a person (or GitLab's vulnerability report) decided about a finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Triage {
    /// Not looked at yet.
    #[default]
    Open,
    /// Not a problem (a test credential, a false positive): never reported again.
    Dismissed,
    /// A real problem.
    Confirmed,
    /// Dealt with (the credential was revoked).
    Resolved,
}

/// The identifier type that links a GitLab vulnerability to a finding: `gitlab-connector`, with
/// the finding's fingerprint as the identifier's value (what the vulnerability export writes).
pub const GITLAB_IDENTIFIER_TYPE: &str = "gitlab-connector";

/// Fingerprints named by a vulnerability's identifiers (`type:value`, as the webhook keeps them).
pub fn linked_fingerprints(identifiers: &[String]) -> Vec<String> {
    identifiers
        .iter()
        // `gitlab-connector:<fp>` when GitLab kept our type; `other:gitlab-connector:<fp>` as
        // `vulnerabilityCreate` stores it (external type `other`, the name as external id).
        .filter_map(|i| i.strip_prefix("other:").unwrap_or(i).strip_prefix(GITLAB_IDENTIFIER_TYPE)?.strip_prefix(':'))
        .filter(|fp| is_fingerprint(fp))
        .map(str::to_owned)
        .collect()
}

impl Triage {
    /// The triage a GitLab vulnerability state means (`detected` is still open).
    pub fn from_gitlab_state(state: &str) -> Option<Self> {
        match state {
            "detected" => Some(Self::Open),
            "confirmed" => Some(Self::Confirmed),
            "dismissed" => Some(Self::Dismissed),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }

    /// Parses the api's value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(Self::Open),
            "dismissed" => Some(Self::Dismissed),
            "confirmed" => Some(Self::Confirmed),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// The non-secret description of a found credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// At most the first four characters, then `…`.
    pub redacted: String,
    /// Length in bytes.
    pub length: usize,
}

/// One finding of one scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable across line moves, unique within an integration (the project is part of it).
    pub fingerprint: String,
    /// `builtin` or the configured scanner's name.
    pub scanner: String,
    /// Rule id.
    pub rule_id: String,
    /// Severity.
    pub severity: Severity,
    /// Path in the repository.
    pub path: String,
    /// 1-based line.
    pub line: u32,
    /// One sentence for a person (plain text; rendering must neutralise it).
    pub message: String,
    /// For secrets: the redacted prefix and length, never the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretInfo>,
    /// Whether the scanner proposed a fix.
    #[serde(default)]
    pub has_fix: bool,
    /// Relative to the baseline.
    pub state: FindingState,
    /// The triage in force when it was read.
    #[serde(default)]
    pub triage: Triage,
}

impl Finding {
    /// A built-in secret finding of a project.
    pub fn from_secret(project_id: u64, f: SecretFinding) -> Self {
        Self {
            fingerprint: qualify(project_id, BUILTIN_SCANNER, &f.fingerprint),
            scanner: BUILTIN_SCANNER.to_owned(),
            rule_id: f.rule_id,
            severity: f.severity,
            path: f.path,
            line: f.line,
            message: f.message,
            secret: Some(SecretInfo { redacted: f.redacted, length: f.length }),
            has_fix: false,
            state: FindingState::New,
            triage: Triage::Open,
        }
    }

    /// An external scanner's finding of a project.
    pub fn from_sarif(project_id: u64, f: SarifFinding) -> Self {
        Self {
            fingerprint: qualify(project_id, &f.scanner, &f.fingerprint),
            has_fix: f.fixes.iter().any(|edits| !edits.is_empty()),
            scanner: f.scanner,
            rule_id: f.rule_id,
            severity: f.severity,
            path: f.path,
            line: f.line,
            message: f.message,
            secret: None,
            state: FindingState::New,
            triage: Triage::Open,
        }
    }
}

/// The integration-wide fingerprint: the scanner's own (rule, path, digest) under the project and
/// scanner, so one file copied into two projects gives two findings with their own triage.
pub fn qualify(project_id: u64, scanner: &str, fingerprint: &str) -> String {
    let digest = Sha256::digest(format!("{project_id}\n{scanner}\n{fingerprint}").as_bytes());
    hex::encode(&digest[..16])
}

/// Keeps at most `max` findings, most severe first (then path and line), one per fingerprint;
/// returns them and whether some were dropped.
pub fn bound(mut findings: Vec<Finding>, max: usize) -> (Vec<Finding>, bool) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.path.cmp(&b.path)).then(a.line.cmp(&b.line)));
    let mut seen = HashSet::new();
    findings.retain(|f| seen.insert(f.fingerprint.clone()));
    let truncated = findings.len() > max;
    findings.truncate(max);
    (findings, truncated)
}

/// Marks each current finding `new` or `present` and adds the previous findings that are gone as
/// `fixed`. `previous` is what the previous scan of the same target still had; `reference` (for a
/// merge request: the latest scan of its target branch) only decides `present` over `new`: a
/// finding that exists only on the target branch is not this target's to fix. `fixed` entries of
/// either list are not findings any more.
pub fn classify(current: Vec<Finding>, previous: &[Finding], reference: &[Finding]) -> Vec<Finding> {
    let live = |list: &[Finding]| -> HashSet<String> {
        list.iter().filter(|f| f.state != FindingState::Fixed).map(|f| f.fingerprint.clone()).collect()
    };
    let known: HashSet<String> = live(previous).union(&live(reference)).cloned().collect();
    let now: HashSet<String> = current.iter().map(|f| f.fingerprint.clone()).collect();
    let mut out: Vec<Finding> = current
        .into_iter()
        .map(|mut f| {
            f.state = if known.contains(&f.fingerprint) { FindingState::Present } else { FindingState::New };
            f
        })
        .collect();
    let mut seen = HashSet::new();
    let mut fixed: Vec<Finding> = previous
        .iter()
        .filter(|f| f.state != FindingState::Fixed && !now.contains(&f.fingerprint) && seen.insert(&f.fingerprint))
        .map(|f| Finding { state: FindingState::Fixed, ..f.clone() })
        .collect();
    fixed.sort_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
    out.extend(fixed);
    out
}

/// Counts of a scan's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// New findings.
    pub new: u64,
    /// Findings also in the baseline.
    pub present: u64,
    /// Baseline findings that are gone.
    pub fixed: u64,
    /// Open (new and present) findings by severity.
    pub by_severity: BTreeMap<Severity, u64>,
}

impl Counts {
    /// Counts the findings as classified.
    pub fn of(findings: &[Finding]) -> Self {
        let mut c = Counts::default();
        for f in findings {
            match f.state {
                FindingState::New => c.new += 1,
                FindingState::Present => c.present += 1,
                FindingState::Fixed => {
                    c.fixed += 1;
                    continue;
                }
            }
            *c.by_severity.entry(f.severity).or_default() += 1;
        }
        c
    }
}

/// A scan's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanState {
    /// Asked for, not started.
    Queued,
    /// A worker has it.
    Running,
    /// Results stored.
    Succeeded,
    /// Could not be done; `error` says why.
    Failed,
    /// A newer commit of the same target was asked for first.
    Superseded,
    /// The merge request was merged or closed before the scan ran.
    Cancelled,
}

impl ScanState {
    /// Whether the scan will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// Why a scan failed, for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanError {
    /// Stable code (`token_invalid`, `repository_not_found`, `commit_not_found`,
    /// `repository_too_large`, `timeout`, `unsafe_repository`, `project_not_tracked`, ...).
    pub code: String,
    /// One sentence.
    pub message: String,
}

/// A tree entry kept out of the checkout (symlink, submodule, LFS pointer, oversized file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEntry {
    /// Path in the repository.
    pub path: String,
    /// `symlink`, `submodule`, `lfs_pointer`, `too_large`.
    pub kind: String,
}

/// What one scanner contributed to a scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannerRun {
    /// `builtin` or the configured name.
    pub name: String,
    /// `succeeded` or `failed`.
    pub state: String,
    /// Findings it reported (before classification).
    pub findings: u64,
    /// Milliseconds it ran.
    pub duration_ms: u64,
    /// Why it failed, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the time of a scan went, and how much it read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// Fetching the commit.
    pub fetch_ms: u64,
    /// Writing the tree into the job directory.
    pub checkout_ms: u64,
    /// All scanners.
    pub scan_ms: u64,
    /// Bytes received from GitLab for the fetch.
    pub bytes_received: u64,
    /// Files in the checkout.
    pub files: u64,
    /// Bytes in the checkout.
    pub bytes: u64,
}

/// A scan as stored and shown (findings are separate items).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// Sortable id: newer scans sort after older ones.
    pub scan_id: String,
    /// GitLab project id.
    pub project_id: u64,
    /// What is scanned.
    pub target: ScanTarget,
    /// The commit (unknown until a manual scan of a branch resolved it).
    #[serde(default)]
    pub sha: Option<CommitSha>,
    /// Why.
    pub trigger: ScanTrigger,
    /// Life.
    pub state: ScanState,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<ScanError>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Counts of the stored findings.
    #[serde(default)]
    pub counts: Counts,
    /// More findings than [`MAX_FINDINGS_PER_SCAN`] were found.
    #[serde(default)]
    pub truncated: bool,
    /// Entries kept out of the checkout (at most 100 listed).
    #[serde(default)]
    pub skipped: Vec<SkippedEntry>,
    /// Each scanner's part.
    #[serde(default)]
    pub scanners: Vec<ScannerRun>,
    /// Timings and sizes.
    #[serde(default)]
    pub stats: ScanStats,
    /// The webhook delivery that asked for it.
    #[serde(default)]
    pub delivery_id: Option<String>,
    /// What was written to GitLab about it.
    #[serde(default)]
    pub report: Option<crate::domain::report::ReportOutcome>,
}

impl ScanRecord {
    /// A scan just asked for: queued, no commit known yet, nothing found.
    pub fn queued(
        scan_id: &str,
        project_id: u64,
        target: ScanTarget,
        trigger: ScanTrigger,
        requested_at: time::OffsetDateTime,
    ) -> Self {
        Self {
            scan_id: scan_id.to_owned(),
            project_id,
            target,
            sha: None,
            trigger,
            state: ScanState::Queued,
            error: None,
            created_at: requested_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            started_at: None,
            finished_at: None,
            counts: Counts::default(),
            truncated: false,
            skipped: Vec::new(),
            scanners: Vec::new(),
            stats: ScanStats::default(),
            delivery_id: None,
            report: None,
        }
    }

    /// The branch the scan reads: the merge request's target for a merge request scan.
    pub fn branch(&self) -> &str {
        match &self.target {
            ScanTarget::MergeRequest { target_branch, .. } => target_branch,
            ScanTarget::Branch { branch } => branch,
        }
    }
}

/// A new scan id: milliseconds since the epoch (13 hex digits, so ids sort by time) and 48
/// random bits.
pub fn new_scan_id(now: time::OffsetDateTime, random: u64) -> String {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    format!("{millis:013x}{:012x}", random & 0xffff_ffff_ffff)
}

/// Whether a string is a scan id this connector made.
pub fn is_scan_id(raw: &str) -> bool {
    raw.len() == 25 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a string is a finding fingerprint as [`qualify`] makes them.
pub fn is_fingerprint(raw: &str) -> bool {
    raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(fp: &str, severity: Severity, path: &str) -> Finding {
        Finding {
            fingerprint: fp.into(),
            scanner: BUILTIN_SCANNER.into(),
            rule_id: "r".into(),
            severity,
            path: path.into(),
            line: 1,
            message: "m".into(),
            secret: None,
            has_fix: false,
            state: FindingState::New,
            triage: Triage::Open,
        }
    }

    #[test]
    fn findings_are_new_present_or_fixed_against_the_baseline() {
        let baseline = vec![
            finding("a", Severity::High, "x"),
            finding("b", Severity::High, "y"),
            Finding { state: FindingState::Fixed, ..finding("gone-before", Severity::Low, "z") },
        ];
        let out = classify(vec![finding("a", Severity::High, "x"), finding("c", Severity::Low, "w")], &baseline, &[]);
        let states: Vec<(&str, FindingState)> = out.iter().map(|f| (f.fingerprint.as_str(), f.state)).collect();
        assert_eq!(states, vec![("a", FindingState::Present), ("c", FindingState::New), ("b", FindingState::Fixed)]);
        let counts = Counts::of(&out);
        assert_eq!((counts.new, counts.present, counts.fixed), (1, 1, 1));
        assert_eq!(counts.by_severity.get(&Severity::High), Some(&1));
        assert_eq!(counts.by_severity.get(&Severity::Low), Some(&1));
    }

    #[test]
    fn without_a_baseline_everything_is_new() {
        let out = classify(vec![finding("a", Severity::High, "x")], &[], &[]);
        assert_eq!(out[0].state, FindingState::New);
    }

    #[test]
    fn the_target_branch_decides_present_but_never_fixed() {
        // A merge request: its previous scan had `a` and `mr-only`; the target branch has `a`,
        // `main-only` (added there after the fork) and `b`, which the merge request keeps.
        let previous = vec![finding("a", Severity::High, "x"), finding("mr-only", Severity::High, "y")];
        let reference = vec![
            finding("a", Severity::High, "x"),
            finding("main-only", Severity::Low, "z"),
            finding("b", Severity::Low, "w"),
        ];
        let current =
            vec![finding("a", Severity::High, "x"), finding("b", Severity::Low, "w"), finding("c", Severity::Low, "v")];
        let out = classify(current, &previous, &reference);
        let states: Vec<(&str, FindingState)> = out.iter().map(|f| (f.fingerprint.as_str(), f.state)).collect();
        assert_eq!(
            states,
            vec![
                ("a", FindingState::Present),
                ("b", FindingState::Present),
                ("c", FindingState::New),
                ("mr-only", FindingState::Fixed),
            ]
        );
    }

    #[test]
    fn bounding_keeps_the_most_severe_and_drops_duplicates() {
        let many = vec![
            finding("low", Severity::Low, "a"),
            finding("crit", Severity::Critical, "b"),
            finding("crit", Severity::Critical, "b"),
            finding("high", Severity::High, "c"),
        ];
        let (kept, truncated) = bound(many, 2);
        assert!(truncated);
        assert_eq!(kept.iter().map(|f| f.fingerprint.as_str()).collect::<Vec<_>>(), vec!["crit", "high"]);
        let (kept, truncated) = bound(vec![finding("a", Severity::Low, "a")], 2);
        assert!(!truncated && kept.len() == 1);
    }

    #[test]
    fn fingerprints_are_scoped_to_project_and_scanner() {
        let a = qualify(1, "builtin", "abc");
        assert!(is_fingerprint(&a));
        assert_ne!(a, qualify(2, "builtin", "abc"));
        assert_ne!(a, qualify(1, "semgrep", "abc"));
        assert_eq!(a, qualify(1, "builtin", "abc"));
    }

    #[test]
    fn scan_ids_sort_by_time_and_are_recognised() {
        let early = new_scan_id(time::macros::datetime!(2026-12-02 10:00 UTC), u64::MAX);
        let late = new_scan_id(time::macros::datetime!(2026-12-02 10:00:00.001 UTC), 0);
        assert!(early < late, "{early} {late}");
        assert!(is_scan_id(&early) && is_scan_id(&late));
        for bad in ["", "xyz", &"A".repeat(25), &"a".repeat(24)] {
            assert!(!is_scan_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn gitlab_vulnerabilities_link_to_findings_by_identifier() {
        let fp = qualify(1, "builtin", "abc");
        let ids = vec![
            "cve:CVE-2024-41123".to_owned(),
            format!("gitlab-connector:{fp}"),
            "gitlab-connector:not-a-fingerprint".to_owned(),
            format!("gitlab-connectorx:{fp}"),
            format!("cwe:gitlab-connector:{fp}"),
        ];
        assert_eq!(linked_fingerprints(&ids), vec![fp.clone()]);
        // As `vulnerabilityCreate` stores the identifier the export sends.
        assert_eq!(linked_fingerprints(&[format!("other:gitlab-connector:{fp}")]), vec![fp]);
        assert_eq!(Triage::from_gitlab_state("dismissed"), Some(Triage::Dismissed));
        assert_eq!(Triage::from_gitlab_state("detected"), Some(Triage::Open));
        assert_eq!(Triage::from_gitlab_state("dropped"), None);
    }

    #[test]
    fn triage_values_parse() {
        for (raw, t) in [
            ("open", Triage::Open),
            ("dismissed", Triage::Dismissed),
            ("confirmed", Triage::Confirmed),
            ("resolved", Triage::Resolved),
        ] {
            assert_eq!(Triage::parse(raw), Some(t));
            assert_eq!(serde_json::to_value(t).expect("json"), serde_json::json!(raw));
        }
        assert_eq!(Triage::parse("Dismissed"), None);
    }
}

//! SARIF 2.1.0 from external scanners (semgrep and the like), read with serde types and mapped to
//! the connector's finding shape. A scanner's output is untrusted input: its size is capped by
//! the caller, and here the number of results, the length of every text and the paths are
//! bounded and validated; anything outside the checkout is dropped.
//!
//! Only the parts the connector uses are modelled (OASIS SARIF 2.1.0: `sarifLog.runs[]`,
//! `run.tool.driver.rules[]`, `run.results[]` with `ruleId`, `level`, `message.text`,
//! `locations[].physicalLocation` and `fixes[].artifactChanges[].replacements[]`); unknown fields
//! are ignored, as the format allows.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::secrets::Severity;

/// Bounds on what one scanner's output may contribute.
#[derive(Clone, Copy, Debug)]
pub struct SarifLimits {
    /// Results kept over all runs (the rest are counted as dropped).
    pub max_results: usize,
    /// Characters kept of a message.
    pub max_message_chars: usize,
    /// Fixes kept per result, and replacements per fix.
    pub max_fixes: usize,
    /// Bytes of inserted content per replacement.
    pub max_insert_bytes: usize,
}

impl Default for SarifLimits {
    fn default() -> Self {
        Self { max_results: 5_000, max_message_chars: 1_000, max_fixes: 5, max_insert_bytes: 16 * 1024 }
    }
}

#[derive(Deserialize)]
struct Log {
    version: String,
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Vec<SarifResult>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Driver,
}

#[derive(Deserialize)]
struct Driver {
    #[serde(default)]
    rules: Vec<ReportingDescriptor>,
}

#[derive(Deserialize)]
struct ReportingDescriptor {
    id: String,
    #[serde(default, rename = "defaultConfiguration")]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(default, rename = "security-severity")]
    security_severity: Option<String>,
}

#[derive(Deserialize)]
struct SarifResult {
    #[serde(default, rename = "ruleId")]
    rule_id: Option<String>,
    #[serde(default)]
    level: Option<String>,
    message: Message,
    #[serde(default)]
    locations: Vec<Location>,
    #[serde(default)]
    fixes: Vec<Fix>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default, rename = "physicalLocation")]
    physical: Option<PhysicalLocation>,
}

#[derive(Deserialize)]
struct PhysicalLocation {
    #[serde(rename = "artifactLocation")]
    artifact: ArtifactLocation,
    #[serde(default)]
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Region {
    #[serde(default)]
    start_line: Option<u32>,
    #[serde(default)]
    start_column: Option<u32>,
    #[serde(default)]
    end_line: Option<u32>,
    #[serde(default)]
    end_column: Option<u32>,
}

#[derive(Deserialize)]
struct Fix {
    #[serde(default, rename = "artifactChanges")]
    changes: Vec<ArtifactChange>,
}

#[derive(Deserialize)]
struct ArtifactChange {
    #[serde(rename = "artifactLocation")]
    artifact: ArtifactLocation,
    #[serde(default)]
    replacements: Vec<Replacement>,
}

#[derive(Deserialize)]
struct Replacement {
    #[serde(rename = "deletedRegion")]
    deleted: Region,
    #[serde(default, rename = "insertedContent")]
    inserted: Option<Content>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    text: Option<String>,
}

/// One edit of a proposed fix: replace the region with `insert`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// Checkout-relative path.
    pub path: String,
    /// 1-based first line of the replaced region.
    pub start_line: u32,
    /// 1-based first column (absent: the whole line).
    pub start_column: Option<u32>,
    /// 1-based last line (absent: `start_line`).
    pub end_line: Option<u32>,
    /// 1-based column after the region (absent: to the end of `end_line`).
    pub end_column: Option<u32>,
    /// Replacement text.
    pub insert: String,
}

/// A scanner's result in the connector's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SarifFinding {
    /// The configured scanner's name.
    pub scanner: String,
    /// The scanner's rule id.
    pub rule_id: String,
    /// Severity from `security-severity`, else the SARIF level.
    pub severity: Severity,
    /// Checkout-relative path.
    pub path: String,
    /// 1-based line (1 when the scanner gave none).
    pub line: u32,
    /// The scanner's message, bounded, as plain text (never rendered as given).
    pub message: String,
    /// Proposed fixes, each a list of edits (possibly empty).
    pub fixes: Vec<Vec<Edit>>,
    /// Scanner, rule, path and message digest: stable across line moves.
    pub fingerprint: String,
}

/// What a scanner's output amounted to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SarifReport {
    /// Kept results.
    pub findings: Vec<SarifFinding>,
    /// Results dropped: over the limit, without a location, or pointing outside the checkout.
    pub dropped: usize,
}

/// Why a scanner's output was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SarifError {
    /// Not JSON of the SARIF shape.
    #[error("not SARIF: {0}")]
    Malformed(String),
    /// Another SARIF version.
    #[error("SARIF version {0} is not 2.1.0")]
    Version(String),
}

/// A checkout-relative path from a SARIF URI, or `None` for anything that leaves the checkout
/// (absolute paths, other schemes, `..`, control characters).
pub fn checkout_path(uri: &str) -> Option<String> {
    let path = uri.strip_prefix("file://").map_or(uri, |p| p);
    if path.is_empty()
        || path.len() > 4096
        || path.starts_with('/')
        || path.contains("://")
        || path.contains('\\')
        || path.chars().any(char::is_control)
    {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.iter().any(|p| *p == ".." || p.contains(':')) {
        return None;
    }
    Some(parts.join("/"))
}

fn severity(level: Option<&str>, security_severity: Option<f64>) -> Severity {
    match security_severity {
        Some(s) if s >= 9.0 => Severity::Critical,
        Some(s) if s >= 7.0 => Severity::High,
        Some(s) if s >= 4.0 => Severity::Medium,
        Some(s) if s > 0.0 => Severity::Low,
        _ => match level {
            Some("error") => Severity::High,
            Some("note") => Severity::Low,
            Some("none") => Severity::Info,
            // "warning" is SARIF's default level.
            _ => Severity::Medium,
        },
    }
}

fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n').take(max).collect()
}

/// Reads one scanner's SARIF output.
pub fn parse_sarif(bytes: &[u8], scanner: &str, limits: SarifLimits) -> Result<SarifReport, SarifError> {
    let log: Log = serde_json::from_slice(bytes).map_err(|e| SarifError::Malformed(e.to_string()))?;
    if log.version != "2.1.0" {
        return Err(SarifError::Version(bounded(&log.version, 20)));
    }
    let mut report = SarifReport::default();
    for run in log.runs {
        let rules = run.tool.driver.rules;
        for result in run.results {
            if report.findings.len() >= limits.max_results {
                report.dropped += 1;
                continue;
            }
            let rule_id = bounded(result.rule_id.as_deref().unwrap_or("unknown"), 200);
            let descriptor = rules.iter().find(|r| r.id == rule_id);
            let security = descriptor
                .and_then(|r| r.properties.as_ref())
                .and_then(|p| p.security_severity.as_deref())
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite());
            let level = result
                .level
                .as_deref()
                .or_else(|| descriptor.and_then(|r| r.default_configuration.as_ref()).and_then(|c| c.level.as_deref()));
            let Some(location) = result.locations.iter().find_map(|l| l.physical.as_ref()) else {
                report.dropped += 1;
                continue;
            };
            let Some(path) = checkout_path(&location.artifact.uri) else {
                report.dropped += 1;
                continue;
            };
            let line = location.region.and_then(|r| r.start_line).unwrap_or(1).max(1);
            let message = bounded(result.message.text.as_deref().unwrap_or(""), limits.max_message_chars);
            let fixes = result
                .fixes
                .iter()
                .take(limits.max_fixes)
                .map(|fix| {
                    fix.changes
                        .iter()
                        .filter_map(|change| checkout_path(&change.artifact.uri).map(|p| (p, change)))
                        .flat_map(|(p, change)| {
                            change.replacements.iter().take(limits.max_fixes).filter_map(move |r| {
                                let insert = r.inserted.as_ref().and_then(|c| c.text.clone()).unwrap_or_default();
                                let start_line = r.deleted.start_line.filter(|l| *l >= 1)?;
                                (insert.len() <= limits.max_insert_bytes).then(|| Edit {
                                    path: p.clone(),
                                    start_line,
                                    start_column: r.deleted.start_column,
                                    end_line: r.deleted.end_line,
                                    end_column: r.deleted.end_column,
                                    insert,
                                })
                            })
                        })
                        .collect::<Vec<Edit>>()
                })
                .filter(|edits| !edits.is_empty())
                .collect();
            let mut fp = Sha256::new();
            for part in [scanner.as_bytes(), rule_id.as_bytes(), path.as_bytes(), message.as_bytes()] {
                fp.update((part.len() as u64).to_be_bytes());
                fp.update(part);
            }
            report.findings.push(SarifFinding {
                scanner: scanner.to_owned(),
                severity: severity(level, security),
                rule_id,
                path,
                line,
                message,
                fixes,
                fingerprint: hex::encode(&fp.finalize()[..16]),
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
#[path = "sarif_tests.rs"]
mod tests;

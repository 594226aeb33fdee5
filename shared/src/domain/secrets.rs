//! The built-in secret scanner: pure, no I/O. It looks at one file's bytes at a time and
//! reports where a credential appears without ever keeping the credential: a finding carries a
//! redacted prefix (at most four characters), the length and a keyed digest.
//!
//! Matching is two-staged: one Aho-Corasick pass over the file finds the rules' keywords
//! (case-insensitive), then only the rules whose keywords occur run their regular expressions
//! (the `regex` crate: linear time, no backtracking). Binary files, vendored and generated
//! trees, lockfiles and allowlisted paths are skipped; a line carrying
//! `gitlab-connector:allow` is never reported.
//!
//! GitLab token prefixes follow GitLab's token prefix table (gitlabhq
//! `doc/security/tokens/index.md`, "Token prefixes"); the runner registration token prefix
//! `GR1348941` is the one GitLab puts on runner registration tokens.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use hmac::{Hmac, KeyInit, Mac};
use regex::bytes::Regex;
use sha2::{Digest, Sha256};

/// The comment that silences a finding on its line.
pub const ALLOW_MARKER: &str = "gitlab-connector:allow";

/// Files larger than this are not scanned (they are recorded as skipped by the caller).
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;

/// A file whose first this-many bytes hold a NUL is binary.
const BINARY_PROBE: usize = 8 * 1024;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// One detection rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Stable id, part of the fingerprint.
    pub id: &'static str,
    /// One sentence for a person.
    pub message: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Lower-case keywords, one of which must occur in the file for the rule to run.
    pub keywords: &'static [&'static str],
    /// The pattern; the named group `secret` is the credential.
    pub pattern: &'static str,
    /// Least Shannon entropy (bits per character) of the credential, for rules that would
    /// otherwise match placeholders.
    pub min_entropy: Option<f64>,
}

/// GitLab's documented token prefixes.
pub const GITLAB_TOKEN_PREFIXES: &[&str] =
    &["glpat-", "gloas-", "gldt-", "glrt-", "glcbt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-", "glffct-"];

/// The rules the scanner applies, most specific first (a span claimed by an earlier rule is not
/// reported again by a later one).
pub const RULES: &[Rule] = &[
    Rule {
        id: "gitlab-token",
        message: "GitLab token",
        severity: Severity::Critical,
        keywords: &[
            "glpat-", "gloas-", "gldt-", "glrt-", "glcbt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-",
            "glffct-",
        ],
        pattern: r"(?P<secret>\b(?:glpat|gloas|gldt|glrt|glcbt|glptt|glft|glimt|glagent|glsoat|glffct)-[0-9A-Za-z_\-]{20,}(?:\.[0-9A-Za-z_\-]+)*)",
        min_entropy: None,
    },
    Rule {
        id: "gitlab-runner-registration-token",
        message: "GitLab runner registration token",
        severity: Severity::High,
        keywords: &["gr1348941"],
        pattern: r"(?P<secret>\bGR1348941[0-9A-Za-z_\-]{20,})",
        min_entropy: None,
    },
    Rule {
        id: "private-key",
        message: "Private key",
        severity: Severity::Critical,
        keywords: &["private key-----"],
        pattern: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?P<secret>[A-Za-z0-9+/=\s:,\-]{64,}?)-----END",
        min_entropy: None,
    },
    Rule {
        id: "aws-access-key-id",
        message: "AWS access key id",
        severity: Severity::High,
        keywords: &["akia", "asia", "abia", "acca"],
        pattern: r"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b",
        min_entropy: None,
    },
    Rule {
        id: "aws-secret-access-key",
        message: "AWS secret access key",
        severity: Severity::Critical,
        keywords: &["aws"],
        pattern: r#"(?i)aws[a-z0-9_.\-]{0,20}(?:secret|sk)[a-z0-9_.\-]{0,20}["']?\s*(?:[:=]|=>|:=)\s*["']?(?P<secret>[0-9A-Za-z/+]{40})\b"#,
        min_entropy: Some(3.5),
    },
    Rule {
        id: "github-token",
        message: "GitHub token",
        severity: Severity::Critical,
        keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        pattern: r"\b(?P<secret>(?:gh[pousr]_[0-9A-Za-z]{36}|github_pat_[0-9A-Za-z_]{82}))\b",
        min_entropy: None,
    },
    Rule {
        id: "slack-token",
        message: "Slack token",
        severity: Severity::High,
        keywords: &["xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"],
        pattern: r"\b(?P<secret>xox[baprs]-[0-9A-Za-z\-]{10,})",
        min_entropy: None,
    },
    Rule {
        id: "slack-webhook",
        message: "Slack incoming webhook URL",
        severity: Severity::High,
        keywords: &["hooks.slack.com"],
        pattern: r"https://hooks\.slack\.com/services/(?P<secret>T[0-9A-Z]{6,}/B[0-9A-Z]{6,}/[0-9A-Za-z]{20,})",
        min_entropy: None,
    },
    Rule {
        id: "stripe-key",
        message: "Stripe secret key",
        severity: Severity::Critical,
        keywords: &["sk_live_", "rk_live_", "sk_test_", "rk_test_"],
        pattern: r"\b(?P<secret>[sr]k_(?:live|test)_[0-9A-Za-z]{24,})\b",
        min_entropy: None,
    },
    Rule {
        id: "google-api-key",
        message: "Google API key",
        severity: Severity::High,
        keywords: &["aiza"],
        pattern: r"\b(?P<secret>AIza[0-9A-Za-z_\-]{35})",
        min_entropy: None,
    },
    Rule {
        id: "jwt",
        message: "JSON Web Token",
        severity: Severity::Medium,
        keywords: &["eyj"],
        pattern: r"\b(?P<secret>eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})",
        min_entropy: None,
    },
    Rule {
        id: "database-url-password",
        message: "Database URL with a password",
        severity: Severity::High,
        keywords: &["://"],
        pattern: r#"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver)://[^\s:/@'"`]+:(?P<secret>[^\s@/'"`]{3,})@[^\s'"`]+"#,
        min_entropy: None,
    },
    Rule {
        id: "generic-secret",
        message: "High-entropy value assigned to a secret-like name",
        severity: Severity::Medium,
        keywords: &["secret", "token", "passw", "api_key", "apikey", "api-key", "access_key", "private_key", "auth"],
        pattern: r#"(?i)(?P<name>[a-z0-9_.\-]*(?:secret|token|passwd|password|api[_\-]?key|access[_\-]?key|private[_\-]?key|auth)[a-z0-9_.\-]*)["']?\s*(?:[:=]|=>|:=)\s*["'](?P<secret>[^"'\s]{16,200})["']"#,
        min_entropy: Some(3.5),
    },
];

/// What the scanner was told about the deployment.
#[derive(Clone, Debug, Default)]
pub struct ScanSettings {
    /// Key of the findings' digests (a deployment secret: without it a digest cannot be tested
    /// against guessed credentials).
    pub digest_key: Vec<u8>,
    /// Paths never scanned: globs where `*` matches within a path segment and `**` across
    /// segments (`docs/**`, `**/*.pem.example`).
    pub allow_paths: Vec<String>,
}

/// A credential found in a file. The credential itself is never kept.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretFinding {
    /// Rule id.
    pub rule_id: String,
    /// One sentence for a person.
    pub message: String,
    /// Severity.
    pub severity: Severity,
    /// Path in the repository.
    pub path: String,
    /// 1-based line of the credential's first character.
    pub line: u32,
    /// At most the first four characters, then `…`.
    pub redacted: String,
    /// Length of the credential in bytes.
    pub length: usize,
    /// HMAC-SHA256 of the credential under the deployment's digest key (hex, 128 bits).
    pub digest: String,
    /// Stable across line moves: rule, path and the credential's digest.
    pub fingerprint: String,
}

/// Why a file was not scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A NUL byte near the start.
    Binary,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// A vendored, generated or lock file.
    Generated,
    /// Matches a configured allowlist pattern.
    Allowlisted,
}

/// Directories whose contents are someone else's code or build output.
const VENDORED_DIRS: &[&str] =
    &["node_modules", "vendor", "third_party", "bower_components", ".git", "dist", "build", "target", "__pycache__"];

/// Files that are generated (lockfiles carry integrity hashes that look like secrets).
const GENERATED_FILES: &[&str] = &[
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "Cargo.lock",
    "go.sum",
    "poetry.lock",
    "Gemfile.lock",
    "composer.lock",
    "Pipfile.lock",
];

const GENERATED_SUFFIXES: &[&str] = &[".min.js", ".min.css", ".map", ".pb.go", "_pb2.py"];

/// The scanner, built once per process.
pub struct SecretScanner {
    keywords: AhoCorasick,
    /// Per keyword pattern index: the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    regexes: Vec<Regex>,
    settings: ScanSettings,
}

impl std::fmt::Debug for SecretScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretScanner").field("rules", &RULES.len()).finish_non_exhaustive()
    }
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum()
}

/// Names that hold identifiers or digests rather than credentials (`token_id`, `secret_hash`,
/// `auth_url`), whatever their value looks like.
fn names_a_non_secret(name: &[u8]) -> bool {
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    let last = lower.rsplit(['_', '-', '.']).next().unwrap_or(&lower);
    [
        "id", "ids", "uuid", "hash", "sha", "sha1", "sha256", "digest", "checksum", "url", "uri", "path", "file",
        "name", "type", "length", "count",
    ]
    .contains(&last)
        || lower.ends_with("id") && !lower.ends_with("secretid")
}

/// Short hexadecimal strings are identifiers and digests far more often than credentials.
fn is_short_hex(value: &[u8]) -> bool {
    value.len() < 32 && value.iter().all(u8::is_ascii_hexdigit)
}

/// Values that stand for a secret without being one.
fn is_placeholder(secret: &[u8]) -> bool {
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    lower.starts_with("${")
        || lower.starts_with("$(")
        || lower.starts_with("{{")
        || lower.starts_with('<')
        || lower.starts_with('%')
        || lower.starts_with("env:")
        || ["example", "changeme", "placeholder", "xxxxxx", "your_", "your-", "redacted", "dummy", "*****"]
            .iter()
            .any(|p| lower.contains(p))
        || secret.iter().all(|&b| b == secret[0])
}

/// Whether `path` matches a glob where `*` stays within a segment and `**` spans segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn segments(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (0..=s.len()).any(|i| segments(rest, &s[i..])),
            Some((first, rest)) => s.split_first().is_some_and(|(seg, tail)| one(first, seg) && segments(rest, tail)),
        }
    }
    fn one(p: &str, s: &str) -> bool {
        match p.split_once('*') {
            None => p == s,
            Some((head, tail)) => {
                s.starts_with(head) && (head.len()..=s.len()).any(|i| s.is_char_boundary(i) && one(tail, &s[i..]))
            }
        }
    }
    let p: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let s: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments(&p, &s)
}

impl SecretScanner {
    /// Compiles the rules.
    pub fn new(settings: ScanSettings) -> Self {
        let mut keywords = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for (index, rule) in RULES.iter().enumerate() {
            for keyword in rule.keywords {
                match keywords.iter().position(|k| k == keyword) {
                    Some(at) => keyword_rules[at].push(index),
                    None => {
                        keywords.push(*keyword);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
        }
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .expect("static keywords compile");
        // Bytes, not text: ASCII classes and word boundaries (`(?-u)`) keep every rule on the
        // lazy DFA, whatever encoding a file has.
        let regexes =
            RULES.iter().map(|r| Regex::new(&format!("(?-u){}", r.pattern)).expect("static rules compile")).collect();
        Self { keywords, keyword_rules, regexes, settings }
    }

    /// Why `path` (and a file of `len` bytes) is not scanned, if it is not.
    pub fn skip_path(&self, path: &str, len: usize) -> Option<Skip> {
        if len > MAX_FILE_BYTES {
            return Some(Skip::TooLarge);
        }
        let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
        if dirs.split('/').any(|d| VENDORED_DIRS.contains(&d))
            || GENERATED_FILES.contains(&name)
            || GENERATED_SUFFIXES.iter().any(|s| name.ends_with(s))
        {
            return Some(Skip::Generated);
        }
        if self.settings.allow_paths.iter().any(|p| glob_match(p, path)) {
            return Some(Skip::Allowlisted);
        }
        None
    }

    /// Scans one file. `Err` says why it was skipped.
    pub fn scan(&self, path: &str, bytes: &[u8]) -> Result<Vec<SecretFinding>, Skip> {
        if let Some(skip) = self.skip_path(path, bytes.len()) {
            return Err(skip);
        }
        if bytes[..bytes.len().min(BINARY_PROBE)].contains(&0) {
            return Err(Skip::Binary);
        }
        let mut wanted = vec![false; RULES.len()];
        for m in self.keywords.find_overlapping_iter(bytes) {
            for &rule in &self.keyword_rules[m.pattern().as_usize()] {
                wanted[rule] = true;
            }
        }
        let mut claimed: Vec<(usize, usize)> = Vec::new();
        let mut findings = Vec::new();
        for (index, rule) in RULES.iter().enumerate().filter(|(i, _)| wanted[*i]) {
            for caps in self.regexes[index].captures_iter(bytes) {
                let Some(secret) = caps.name("secret") else { continue };
                let span = (secret.start(), secret.end());
                let value = secret.as_bytes();
                if claimed.iter().any(|&(s, e)| span.0 < e && s < span.1)
                    || is_placeholder(value)
                    || rule.min_entropy.is_some_and(|min| entropy(value) < min)
                    || caps.name("name").is_some_and(|n| names_a_non_secret(n.as_bytes()))
                    || (rule.id == "generic-secret" && is_short_hex(value))
                {
                    continue;
                }
                claimed.push(span);
                let line_start = bytes[..span.0].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let line_end = bytes[span.0..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| span.0 + i);
                if contains(&bytes[line_start..line_end], ALLOW_MARKER.as_bytes()) {
                    continue;
                }
                let line = bytes[..span.0].iter().filter(|&&b| b == b'\n').count() as u32 + 1;
                findings.push(self.finding(rule, path, line, value));
            }
        }
        findings.sort_by(|a, b| (a.line, &a.rule_id).cmp(&(b.line, &b.rule_id)));
        Ok(findings)
    }

    fn finding(&self, rule: &Rule, path: &str, line: u32, secret: &[u8]) -> SecretFinding {
        // Whitespace inside a multi-line credential (a key block) is not part of its identity.
        let normalised: Vec<u8> = secret.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.settings.digest_key).expect("any key length");
        mac.update(&normalised);
        let digest = hex::encode(&mac.finalize().into_bytes()[..16]);
        let mut fp = Sha256::new();
        for part in [rule.id.as_bytes(), path.as_bytes(), digest.as_bytes()] {
            fp.update((part.len() as u64).to_be_bytes());
            fp.update(part);
        }
        let shown: String = String::from_utf8_lossy(&normalised).chars().take(4.min(normalised.len() / 4)).collect();
        SecretFinding {
            rule_id: rule.id.to_owned(),
            message: rule.message.to_owned(),
            severity: rule.severity,
            path: path.to_owned(),
            line,
            redacted: format!("{shown}…"),
            length: normalised.len(),
            digest,
            fingerprint: hex::encode(&fp.finalize()[..16]),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;

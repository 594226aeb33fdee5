//! What a scan is asked to look at: a merge request's head or a branch's head, identified by a
//! validated commit SHA, and the key that makes repeated requests for the same commit one scan.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::IntegrationId;

/// Longest Git ref name accepted from a payload (GitLab limits branch names to 255 bytes).
pub const MAX_REF_LEN: usize = 255;

/// A full commit id: 40 (SHA-1) or 64 (SHA-256 repositories) lower-case hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitSha(String);

impl CommitSha {
    /// Accepts 40 or 64 hex characters in either case and keeps them lower-case; the all-zeros id
    /// (GitLab's "no commit": a created or deleted branch) is refused.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = matches!(raw.len(), 40 | 64) && raw.bytes().all(|b| b.is_ascii_hexdigit());
        (ok && !raw.bytes().all(|b| b == b'0')).then(|| Self(raw.to_ascii_lowercase()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CommitSha {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| "invalid commit sha".to_owned())
    }
}

impl From<CommitSha> for String {
    fn from(value: CommitSha) -> Self {
        value.0
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A branch name as it may appear in a ref: 1-255 bytes, no control characters, none of the
/// characters Git forbids in ref names, no `..` and no leading `-`.
pub fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REF_LEN
        && !name.starts_with('-')
        && !name.contains("..")
        && !name.chars().any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
}

/// What to scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScanTarget {
    /// A merge request's head (`refs/merge-requests/<iid>/head` of the target project).
    MergeRequest {
        /// The merge request's project-local id.
        iid: u64,
        /// The branch it merges into (the baseline of "new" findings).
        target_branch: String,
    },
    /// The head of a branch (a push to the default branch, or a manual scan).
    Branch {
        /// The branch name (without `refs/heads/`).
        branch: String,
    },
}

impl ScanTarget {
    /// The part of the scan key that names the target.
    pub fn key(&self) -> String {
        match self {
            ScanTarget::MergeRequest { iid, .. } => format!("mr:{iid}"),
            ScanTarget::Branch { branch } => format!("ref:{branch}"),
        }
    }
}

/// Why a scan was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanTrigger {
    /// A merge request was opened, reopened or received new commits.
    MergeRequest,
    /// A push to the default branch.
    Push,
    /// A person asked for it.
    Manual,
}

/// The key on which scan requests are deduplicated: one scan per integration, project, target
/// and head commit, however many deliveries ask for it.
pub fn scan_key(integration: &IntegrationId, project_id: u64, target: &ScanTarget, sha: &CommitSha) -> String {
    format!("{integration}:{project_id}:{}:{sha}", target.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_are_full_hex_and_never_all_zeros() {
        let sha1 = "DA1560886d4f094c3e6c9ef40349f7d38b5d27d7";
        assert_eq!(CommitSha::parse(sha1).expect("sha1").as_str(), sha1.to_ascii_lowercase());
        assert!(CommitSha::parse(&"a".repeat(64)).is_some());
        for bad in ["", "da15608", &"0".repeat(40), &"g".repeat(40), &"a".repeat(41), &format!("{sha1}\n")] {
            assert!(CommitSha::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn branch_names_follow_git_ref_rules() {
        for good in ["main", "feature/x-1", "release-2026.11", "ünïcode"] {
            assert!(valid_branch(good), "{good:?} refused");
        }
        for bad in ["", "-x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(!valid_branch(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn scan_keys_separate_targets_and_commits() {
        let id = IntegrationId::parse("0123456789abcdef0123456789abcdef").expect("id");
        let sha = CommitSha::parse(&"ab".repeat(20)).expect("sha");
        let mr = ScanTarget::MergeRequest { iid: 7, target_branch: "main".into() };
        let branch = ScanTarget::Branch { branch: "main".into() };
        assert_eq!(scan_key(&id, 5, &mr, &sha), format!("{id}:5:mr:7:{sha}"));
        assert_ne!(scan_key(&id, 5, &mr, &sha), scan_key(&id, 5, &branch, &sha));
        // The target branch is not part of the key: retargeting an MR does not rescan one commit.
        let retargeted = ScanTarget::MergeRequest { iid: 7, target_branch: "dev".into() };
        assert_eq!(scan_key(&id, 5, &mr, &sha), scan_key(&id, 5, &retargeted, &sha));
    }
}

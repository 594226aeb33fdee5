//! GitLab projects as the connector keeps them: validated snapshots of what the listing said,
//! the team's tracking choice, and the rule that decides whether a sync must write anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest accepted `path_with_namespace` (GitLab nests groups 20 deep; 255 per segment).
const MAX_PATH: usize = 1024;

/// What the listing reported about one project, after validation. Every string here came from
/// GitLab and is treated as data (security policy 8.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSnapshot {
    /// GitLab's numeric id: the key, so renames and transfers are updates.
    pub id: u64,
    /// `group/sub/project`, validated.
    pub path_with_namespace: String,
    /// Browser URL, rebuilt from the instance base URL and the path (never taken verbatim).
    pub web_url: String,
    /// Default branch, if the repository has one and the name is a safe ref.
    pub default_branch: Option<String>,
    /// `private`, `internal` or `public` when known.
    pub visibility: Option<String>,
    /// Archived projects are kept and flagged.
    pub archived: bool,
    /// A project without commits (or a branch to scan).
    pub empty_repo: bool,
    /// As GitLab reports it (RFC 3339), updated at most hourly by GitLab.
    pub last_activity_at: Option<String>,
}

/// Checks a `path_with_namespace`: segments of `[A-Za-z0-9._-]`, no `.`/`..`, no leading `-`.
pub fn valid_project_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH
        && path.split('/').count() >= 2
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && !seg.starts_with('-')
                && !seg.ends_with(".git")
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Checks a branch name against `git check-ref-format --branch` rules, plus "no leading `-`" so
/// it can never be read as an option.
pub fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name != "@"
        && !name.split('/').any(|c| c.starts_with('.') || c.ends_with(".lock"))
        && name.bytes().all(|b| b > 0x20 && b != 0x7f && !b" ~^:?*[\\".contains(&b))
}

/// Why a listed project was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The path is not a safe GitLab project path.
    #[error("unsafe project path")]
    BadPath,
    /// The id is zero.
    #[error("invalid project id")]
    BadId,
}

impl ProjectSnapshot {
    /// Builds a validated snapshot. An unsafe default branch is dropped (the project is kept,
    /// but nothing will be fetched from that ref); an unsafe path rejects the project.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base_url: &str,
        id: u64,
        path_with_namespace: &str,
        default_branch: Option<&str>,
        visibility: Option<&str>,
        archived: bool,
        empty_repo: Option<bool>,
        last_activity_at: Option<&str>,
    ) -> Result<Self, SnapshotError> {
        if id == 0 {
            return Err(SnapshotError::BadId);
        }
        if !valid_project_path(path_with_namespace) {
            return Err(SnapshotError::BadPath);
        }
        // GitLab reports no default branch for a repository without commits (older versions).
        let empty_repo = empty_repo.unwrap_or(default_branch.is_none());
        let default_branch = default_branch.filter(|b| valid_branch(b)).map(str::to_owned);
        let visibility = visibility.filter(|v| matches!(*v, "private" | "internal" | "public")).map(str::to_owned);
        let last_activity_at = last_activity_at
            .filter(|t| t.len() <= 40 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b":.+-".contains(&b)))
            .map(str::to_owned);
        Ok(Self {
            id,
            web_url: format!("{base_url}/{path_with_namespace}"),
            path_with_namespace: path_with_namespace.to_owned(),
            empty_repo,
            default_branch,
            visibility,
            archived,
            last_activity_at,
        })
    }

    /// A digest of everything GitLab told us; equal digests mean nothing to write.
    pub fn fingerprint(&self) -> String {
        let encoded = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&encoded)[..16])
    }
}

/// A project as stored for a team's integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// What GitLab said, last time it changed.
    #[serde(flatten)]
    pub snapshot: ProjectSnapshot,
    /// [`ProjectSnapshot::fingerprint`] of `snapshot`.
    pub fingerprint: String,
    /// Chosen by the team for scanning.
    #[serde(default)]
    pub tracked: bool,
    /// Language shares from `/projects/:id/languages` (tracked projects only).
    #[serde(default)]
    pub languages: Option<BTreeMap<String, f64>>,
    /// Set when a completed full sync no longer saw the project (RFC 3339).
    #[serde(default)]
    pub removed_at: Option<String>,
    /// Id of the sync that last wrote this project.
    pub sync_id: String,
    /// Webhook health as last seen.
    #[serde(default)]
    pub webhook: ProjectWebhook,
}

/// What the connector knows about a project's webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectWebhook {
    /// When an authenticated delivery for the project last arrived (RFC 3339; recorded at most
    /// every few minutes).
    #[serde(default)]
    pub last_delivery_at: Option<String>,
    /// The managed hook, when the connector manages one (or tried to).
    #[serde(default)]
    pub hook: Option<HookRecord>,
}

/// A managed hook as the connector last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// GitLab's hook id; `None` when it could not be created (see `error`).
    pub hook_id: Option<u64>,
    /// GitLab's `alert_status` as last read.
    pub alert_status: Option<String>,
    /// GitLab's `disabled_until` as last read.
    pub disabled_until: Option<String>,
    /// When the connector last checked the hook (RFC 3339).
    pub last_checked_at: String,
    /// Why the hook could not be created or repaired (`insufficient_role`, `instance_error`).
    pub error: Option<String>,
}

/// A project the hook reconciliation looks at: tracked ones, and ones that still have a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookTarget {
    /// GitLab's project id.
    pub project_id: u64,
    /// Tracked and not removed: it should have a hook.
    pub wants_hook: bool,
    /// The hook id the connector recorded, if any.
    pub hook_id: Option<u64>,
}

/// The little a sync needs to know about a stored project to decide whether to write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRef {
    /// Fingerprint of the stored snapshot.
    pub fingerprint: String,
    /// Whether the project is marked removed.
    pub removed: bool,
    /// Whether the team tracks it (languages are fetched for tracked projects only).
    pub tracked: bool,
    /// Fingerprint of the state the last `GET /projects/:id` lookup (and languages) confirmed.
    #[serde(default)]
    pub details_fingerprint: Option<String>,
    /// The stored `empty_repo` flag.
    #[serde(default)]
    pub empty_repo: bool,
}

impl StoredRef {
    /// Whether the stored snapshot is what the last details lookup saw (so its `empty_repo` came
    /// from GitLab's full entity, not from a guess).
    pub fn details_current(&self) -> bool {
        self.details_fingerprint.as_deref() == Some(self.fingerprint.as_str())
    }
}

/// Whether a listed project's repository is empty, as far as the listing can tell. The full
/// entity says so (`empty_repo`). The simple entity does not; older GitLab versions report no
/// default branch for an empty repository, current ones report the instance's default branch
/// name even then. So a flag that a details lookup confirmed for the stored state is kept, and
/// only otherwise is it guessed from the default branch: a project is never rewritten back and
/// forth between the listing's guess and the lookup's answer.
pub fn listed_empty_repo(listed: Option<bool>, default_branch: Option<&str>, stored: Option<&StoredRef>) -> bool {
    match (listed, stored.filter(|s| s.details_current())) {
        (Some(flag), _) => flag,
        (None, Some(confirmed)) => confirmed.empty_repo,
        (None, None) => default_branch.is_none(),
    }
}

/// What a sync must do for one listed project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconcile {
    /// New project: write it untracked.
    Add,
    /// Known project whose listing changed, or that came back after removal: write the
    /// snapshot, keeping the team's tracking choice and languages.
    Update,
    /// Nothing changed: no write.
    Unchanged,
}

/// A tracked project is looked up (`GET /projects/:id` for the flags the simple listing lacks,
/// then its languages) unless a lookup already confirmed the state now listed (`seen`).
/// A lookup that was skipped (cap, 429, deadline, crash) is therefore retried on the next sync.
/// The fingerprint is computed for tracked projects only.
pub fn wants_details(stored: Option<&StoredRef>, seen: &ProjectSnapshot) -> bool {
    stored.is_some_and(|s| s.tracked && s.details_fingerprint.as_deref() != Some(seen.fingerprint().as_str()))
}

/// Decides the write for one listed project; a second sync of an unchanged instance writes
/// nothing.
pub fn reconcile(stored: Option<&StoredRef>, seen: &ProjectSnapshot) -> Reconcile {
    match stored {
        None => Reconcile::Add,
        Some(old) if !old.removed && old.fingerprint == seen.fingerprint() => Reconcile::Unchanged,
        Some(_) => Reconcile::Update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://gitlab.example.com";

    fn snap(id: u64, path: &str) -> ProjectSnapshot {
        ProjectSnapshot::new(
            BASE,
            id,
            path,
            Some("main"),
            Some("private"),
            false,
            None,
            Some("2026-11-20T10:00:00.000Z"),
        )
        .expect("valid")
    }

    #[test]
    fn paths_and_branches_are_validated_as_data() {
        for good in ["group/project", "a/b/c/d", "G.r_p-1/x.y", "group/proj.gitx"] {
            assert!(valid_project_path(good), "{good}");
        }
        for bad in [
            "",
            "project",
            "group/../x",
            "group/./x",
            "/group/x",
            "group/x/",
            "group/-x",
            "grp/x y",
            "grp/x%2F",
            "grp/x.git",
            "grp/ü",
        ] {
            assert!(!valid_project_path(bad), "{bad}");
        }
        for good in ["main", "release/1.2", "feature/x-y_z", "v1.0.0"] {
            assert!(valid_branch(good), "{good}");
        }
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "x.lock",
            "a/.hidden",
            "/a",
            "a/",
            "a.",
            "@",
            "a@{1}",
            "a//b",
        ] {
            assert!(!valid_branch(bad), "{bad}");
        }
    }

    #[test]
    fn snapshots_rebuild_urls_and_drop_unsafe_values() {
        let s =
            ProjectSnapshot::new(BASE, 7, "g/p", Some("--upload-pack=evil"), Some("secret"), true, None, Some("<x>"))
                .expect("kept");
        assert_eq!(s.web_url, "https://gitlab.example.com/g/p");
        assert_eq!(s.default_branch, None);
        assert!(!s.empty_repo, "the repository has commits; only its branch name is unusable");
        assert_eq!(s.visibility, None);
        assert_eq!(s.last_activity_at, None);
        assert!(s.archived);
        assert_eq!(ProjectSnapshot::new(BASE, 7, "../etc", None, None, false, None, None), Err(SnapshotError::BadPath));
        assert_eq!(ProjectSnapshot::new(BASE, 0, "g/p", None, None, false, None, None), Err(SnapshotError::BadId));
        let explicit =
            ProjectSnapshot::new(BASE, 8, "g/q", Some("main"), None, false, Some(true), None).expect("valid");
        assert!(explicit.empty_repo);
    }

    #[test]
    fn unchanged_projects_write_nothing_and_renames_are_updates() {
        let seen = snap(1, "g/p");
        assert_eq!(reconcile(None, &seen), Reconcile::Add);
        let stored = StoredRef {
            fingerprint: seen.fingerprint(),
            removed: false,
            tracked: true,
            details_fingerprint: None,
            empty_repo: false,
        };
        assert_eq!(reconcile(Some(&stored), &snap(1, "g/p")), Reconcile::Unchanged);
        assert_eq!(reconcile(Some(&stored), &snap(1, "other-group/p-renamed")), Reconcile::Update);
        let removed = StoredRef { removed: true, ..stored };
        assert_eq!(reconcile(Some(&removed), &snap(1, "g/p")), Reconcile::Update);
        assert_ne!(snap(1, "g/p").fingerprint(), snap(2, "g/p").fingerprint());
    }

    #[test]
    fn only_a_confirmed_empty_flag_survives_a_listing_that_cannot_tell() {
        let confirmed = StoredRef {
            fingerprint: "f1".into(),
            removed: false,
            tracked: true,
            details_fingerprint: Some("f1".into()),
            empty_repo: true,
        };
        let guessed = StoredRef { details_fingerprint: None, ..confirmed.clone() };
        assert!(listed_empty_repo(Some(true), Some("main"), None), "the full entity says so");
        assert!(!listed_empty_repo(Some(false), None, Some(&confirmed)), "the full entity wins");
        assert!(listed_empty_repo(None, None, None), "older GitLab: no default branch");
        assert!(listed_empty_repo(None, Some("main"), Some(&confirmed)), "kept from the lookup");
        assert!(!listed_empty_repo(None, Some("main"), Some(&guessed)), "a guess is not kept");
        assert!(!listed_empty_repo(None, Some("main"), None), "unknown until looked up");
        // Commits but no default branch (HEAD names a missing branch): the lookup's answer stays.
        let has_commits = StoredRef { empty_repo: false, ..confirmed };
        assert!(!listed_empty_repo(None, None, Some(&has_commits)));
    }

    #[test]
    fn tracked_projects_are_looked_up_until_a_lookup_confirmed_their_state() {
        let (f1, f2) = (snap(1, "g/p"), snap(1, "g/p-renamed"));
        let base = StoredRef {
            fingerprint: f1.fingerprint(),
            removed: false,
            tracked: true,
            details_fingerprint: Some(f1.fingerprint()),
            empty_repo: false,
        };
        assert!(!wants_details(None, &f1), "new projects are untracked");
        assert!(!wants_details(Some(&base), &f1), "confirmed and unchanged");
        assert!(wants_details(Some(&base), &f2), "changed since the lookup");
        assert!(wants_details(Some(&StoredRef { details_fingerprint: None, ..base.clone() }), &f1), "never looked up");
        assert!(!wants_details(Some(&StoredRef { tracked: false, ..base }), &f2), "untracked");
    }
}

//! Reading a project's bare repository with the real `git` (clean environment, no
//! configuration): resolving commits, merge bases and the per-file diffs GitLab shows for a
//! merge request.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use crate::repos::git;

/// Whether `rev` can be handed to git as a revision: no option-looking or odd characters.
pub(crate) fn is_safe_rev(rev: &str) -> bool {
    !rev.is_empty()
        && rev.len() <= 256
        && !rev.starts_with('-')
        && !rev.contains("..")
        && !rev.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '*' | '?' | '[' | '\\' | ':'))
}

/// Runs git on `repo` and returns stdout when it succeeded.
pub(crate) fn output(repo: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = git(Some(repo)).args(args).stdin(Stdio::null()).output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn output_text(repo: &Path, args: &[&str]) -> Option<String> {
    output(repo, args).map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `rev` (a sha, a branch or tag name, or a full ref) names, as 40 hex digits.
pub(crate) fn commit_sha(repo: &Path, rev: &str) -> Option<String> {
    if !is_safe_rev(rev) {
        return None;
    }
    let spec = format!("{rev}^{{commit}}");
    let sha = output_text(repo, &["rev-parse", "--verify", "--quiet", "--end-of-options", &spec])?;
    is_sha(&sha).then_some(sha)
}

/// The commit a full ref name (`refs/heads/main`) points at, without treating it as a pattern.
pub(crate) fn ref_commit(repo: &Path, full_ref: &str) -> Option<String> {
    if !full_ref.starts_with("refs/") || !is_safe_rev(full_ref) {
        return None;
    }
    commit_sha(repo, full_ref)
}

/// `git merge-base a b`.
pub(crate) fn merge_base(repo: &Path, a: &str, b: &str) -> Option<String> {
    let sha = output_text(repo, &["merge-base", a, b])?;
    is_sha(&sha).then_some(sha)
}

/// The branches whose tip contains `sha`, by name.
pub(crate) fn branches_containing(repo: &Path, sha: &str) -> Vec<String> {
    output_text(repo, &["for-each-ref", "--format=%(refname:strip=2)", "--contains", sha, "refs/heads/"])
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Every ref under `prefix` (for example `refs/merge-requests/`) with its object id.
pub(crate) fn refs_under(repo: &Path, prefix: &str) -> Vec<(String, String)> {
    output_text(repo, &["for-each-ref", "--format=%(refname) %(objectname)", prefix])
        .map(|s| {
            s.lines().filter_map(|l| l.split_once(' ')).map(|(name, sha)| (name.to_string(), sha.to_string())).collect()
        })
        .unwrap_or_default()
}

/// One changed file of a diff, in `Entities::Diff`'s terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileDiff {
    pub(crate) old_path: String,
    pub(crate) new_path: String,
    /// Octal modes as GitLab shows them; `"0"` for the missing side of an added or deleted file.
    pub(crate) a_mode: String,
    pub(crate) b_mode: String,
    /// The hunks, from the first `@@` line; empty for binary files and mode-only changes.
    pub(crate) diff: String,
    pub(crate) new_file: bool,
    pub(crate) renamed_file: bool,
    pub(crate) deleted_file: bool,
}

/// Which lines of a file a diff note may point at.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DiffLines {
    /// New-file line numbers of `+` lines.
    pub(crate) added: BTreeSet<u64>,
    /// Old-file line numbers of `-` lines.
    pub(crate) removed: BTreeSet<u64>,
    /// `(old, new)` line numbers of unchanged lines shown in a hunk.
    pub(crate) context: BTreeSet<(u64, u64)>,
}

impl FileDiff {
    /// Walks the hunks the way GitLab's diff parser numbers lines.
    pub(crate) fn lines(&self) -> DiffLines {
        let mut lines = DiffLines::default();
        let (mut old, mut new) = (0u64, 0u64);
        for line in self.diff.lines() {
            if let Some(header) = line.strip_prefix("@@ ") {
                let mut parts = header.split(' ');
                let start = |p: Option<&str>, sign: char| {
                    p.and_then(|p| p.strip_prefix(sign))
                        .and_then(|p| p.split(',').next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                old = start(parts.next(), '-');
                new = start(parts.next(), '+');
                continue;
            }
            match line.as_bytes().first() {
                Some(b'+') => {
                    lines.added.insert(new);
                    new += 1;
                }
                Some(b'-') => {
                    lines.removed.insert(old);
                    old += 1;
                }
                Some(b'\\') => {}
                _ => {
                    lines.context.insert((old, new));
                    old += 1;
                    new += 1;
                }
            }
        }
        lines
    }
}

fn mode(raw: &str) -> String {
    if raw.bytes().all(|b| b == b'0') { "0".to_string() } else { raw.to_string() }
}

/// The files changed between `base` and `head` (rename detection on, three lines of context),
/// in git's order. `None` when git fails (unknown commits, say).
pub(crate) fn diff(repo: &Path, base: &str, head: &str) -> Option<Vec<FileDiff>> {
    if !is_safe_rev(base) || !is_safe_rev(head) {
        return None;
    }
    let common = ["-c", "core.quotepath=false", "diff", "--no-color", "--no-ext-diff", "-M", "--full-index"];
    let mut raw_args: Vec<&str> = common.to_vec();
    raw_args.extend(["--raw", "-z", "--abbrev=40", base, head, "--"]);
    let raw = output(repo, &raw_args)?;
    let mut patch_args: Vec<&str> = common.to_vec();
    patch_args.extend(["-p", "-U3", base, head, "--"]);
    let patch = output(repo, &patch_args)?;

    let mut files = Vec::new();
    let mut fields = raw.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    while let Some(header) = fields.next() {
        let Some(header) = header.strip_prefix(':') else { continue };
        let parts: Vec<&str> = header.split(' ').collect();
        let [a_mode, b_mode, _, _, status] = parts.as_slice() else { continue };
        let kind = status.chars().next().unwrap_or('M');
        let first = fields.next().unwrap_or_default();
        let (old_path, new_path) = if matches!(kind, 'R' | 'C') {
            let second = fields.next().unwrap_or_default();
            (first, second)
        } else {
            (first.clone(), first)
        };
        files.push(FileDiff {
            old_path,
            new_path,
            a_mode: mode(a_mode),
            b_mode: mode(b_mode),
            diff: String::new(),
            new_file: kind == 'A',
            renamed_file: kind == 'R',
            deleted_file: kind == 'D',
        });
    }

    // The patch lists the same files in the same order, each starting with `diff --git `.
    let patch = String::from_utf8_lossy(&patch);
    let mut chunks: Vec<String> = Vec::new();
    for line in patch.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            chunks.push(String::new());
            continue;
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.push_str(line);
        }
    }
    for (file, chunk) in files.iter_mut().zip(chunks) {
        if let Some(at) = chunk.find("\n@@ ").map(|i| i + 1).or_else(|| chunk.starts_with("@@ ").then_some(0)) {
            file.diff = chunk[at..].to_string();
        }
    }
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(diff: &str) -> FileDiff {
        FileDiff {
            old_path: "a".into(),
            new_path: "a".into(),
            a_mode: "100644".into(),
            b_mode: "100644".into(),
            diff: diff.into(),
            new_file: false,
            renamed_file: false,
            deleted_file: false,
        }
    }

    #[test]
    fn hunk_lines_are_numbered_like_gitlab() {
        let lines =
            file("@@ -2,4 +2,5 @@ fn x\n a\n-b\n+c\n+d\n e\n\\ No newline at end of file\n@@ -20 +21,0 @@\n-z\n")
                .lines();
        assert_eq!(lines.added, BTreeSet::from([3, 4]));
        assert_eq!(lines.removed, BTreeSet::from([3, 20]));
        assert_eq!(lines.context, BTreeSet::from([(2, 2), (4, 5)]));
    }

    #[test]
    fn revisions_that_look_like_options_are_refused() {
        assert!(is_safe_rev("main"));
        assert!(is_safe_rev("refs/merge-requests/1/head"));
        assert!(!is_safe_rev("--upload-pack=x"));
        assert!(!is_safe_rev("a..b"));
        assert!(!is_safe_rev(""));
        assert!(!is_safe_rev("a b"));
    }
}

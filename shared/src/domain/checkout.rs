//! What of a fetched tree may be written into a scan's job directory. A repository is untrusted
//! input: its paths, modes and sizes are checked entry by entry before anything touches the
//! disk, and the whole checkout is bounded in files and bytes.
//!
//! - Regular and executable files are written (executable bits dropped).
//! - Symbolic links are recorded with their target, never created or followed.
//! - Submodules (gitlinks) are recorded, never fetched; so are Git LFS pointer files (their
//!   content is a pointer, not the file).
//! - Paths that could leave the directory or reach Git's own files are refused: absolute,
//!   `..`, `.git` in any case (and its 8.3 short name `git~1`), NUL, backslashes, and paths
//!   over the length or depth limits.

/// Bounds on one checkout.
#[derive(Clone, Copy, Debug)]
pub struct CheckoutLimits {
    /// Files written.
    pub max_files: u64,
    /// Bytes written.
    pub max_bytes: u64,
    /// Bytes of one file (larger ones are recorded as skipped, not written).
    pub max_file_bytes: u64,
    /// Bytes of a path.
    pub max_path_bytes: usize,
    /// Components of a path.
    pub max_depth: usize,
}

impl Default for CheckoutLimits {
    fn default() -> Self {
        Self {
            max_files: 100_000,
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_file_bytes: 50 * 1024 * 1024,
            max_path_bytes: 1024,
            max_depth: 64,
        }
    }
}

/// A tree entry's kind, from its Git mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// `100644`.
    File,
    /// `100755`.
    Executable,
    /// `120000`.
    Symlink,
    /// `160000`: a submodule commit.
    Gitlink,
}

impl EntryKind {
    /// The kind of a Git tree mode; `None` for modes a tree entry to check out cannot have.
    pub fn from_mode(mode: u32) -> Option<Self> {
        match mode {
            0o100644 | 0o100664 => Some(Self::File),
            0o100755 => Some(Self::Executable),
            0o120000 => Some(Self::Symlink),
            0o160000 => Some(Self::Gitlink),
            _ => None,
        }
    }
}

/// What to do with one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the file at this (validated, relative) path.
    Write(String),
    /// Do not write; record why.
    Record(String, Recorded),
}

/// Entries kept out of the checkout but shown with the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A symbolic link and its target (never created).
    Symlink(String),
    /// A submodule (never fetched).
    Submodule,
    /// A Git LFS pointer (the object is never fetched).
    LfsPointer,
    /// Larger than [`CheckoutLimits::max_file_bytes`].
    TooLarge(u64),
}

/// Why a checkout stops as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutError {
    /// A path that could leave the job directory or reach Git's own files.
    #[error("unsafe path in the repository: {0}")]
    UnsafePath(String),
    /// A mode a checkout cannot have.
    #[error("unsupported tree entry mode {0:o}")]
    Mode(u32),
    /// Over the file count or byte limit.
    #[error("the repository is larger than a scan reads ({0})")]
    TooBig(&'static str),
}

/// Whether a path component is `.git` as some file system would see it: any case, with
/// trailing dots or spaces (Windows), or its 8.3 short name.
fn is_git_dir(component: &str) -> bool {
    let trimmed = component.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    trimmed == ".git" || trimmed == "git~1"
}

/// A safe relative path, or why not. The path is what the tree says, joined with `/`.
pub fn safe_path(path: &str, limits: &CheckoutLimits) -> Result<String, CheckoutError> {
    let unsafe_path = || CheckoutError::UnsafePath(path.chars().take(200).collect());
    if path.is_empty() || path.len() > limits.max_path_bytes || path.starts_with('/') {
        return Err(unsafe_path());
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > limits.max_depth
        || components.iter().any(|c| {
            c.is_empty() || *c == "." || *c == ".." || c.contains(['\0', '\\', ':']) || is_git_dir(c) || c.len() > 255
        })
    {
        return Err(unsafe_path());
    }
    Ok(path.to_owned())
}

/// Whether a blob's first bytes are a Git LFS pointer (`version https://git-lfs.github.com/spec/v1`).
pub fn is_lfs_pointer(head: &[u8]) -> bool {
    head.len() < 1024 && head.starts_with(b"version https://git-lfs.github.com/spec/")
}

/// Running totals of one checkout; decides entry by entry.
#[derive(Debug, Default)]
pub struct Checkout {
    limits: CheckoutLimits,
    files: u64,
    bytes: u64,
}

impl Checkout {
    /// A checkout under `limits`.
    pub fn new(limits: CheckoutLimits) -> Self {
        Self { limits, files: 0, bytes: 0 }
    }

    /// Decides one entry: `path` as the tree gives it, its `mode`, its `size` in bytes, and for
    /// blobs the first bytes (`head`, for the LFS check) or, for symlinks, the target.
    pub fn decide(&mut self, path: &str, mode: u32, size: u64, head: &[u8]) -> Result<Decision, CheckoutError> {
        let limits = self.limits;
        let path = safe_path(path, &limits)?;
        match EntryKind::from_mode(mode).ok_or(CheckoutError::Mode(mode))? {
            EntryKind::Symlink => {
                let target: String =
                    String::from_utf8_lossy(head).chars().filter(|c| !c.is_control()).take(1024).collect();
                Ok(Decision::Record(path, Recorded::Symlink(target)))
            }
            EntryKind::Gitlink => Ok(Decision::Record(path, Recorded::Submodule)),
            EntryKind::File | EntryKind::Executable => {
                if is_lfs_pointer(head) && size < 1024 {
                    return Ok(Decision::Record(path, Recorded::LfsPointer));
                }
                if size > limits.max_file_bytes {
                    return Ok(Decision::Record(path, Recorded::TooLarge(size)));
                }
                self.files += 1;
                self.bytes = self.bytes.saturating_add(size);
                if self.files > limits.max_files {
                    return Err(CheckoutError::TooBig("files"));
                }
                if self.bytes > limits.max_bytes {
                    return Err(CheckoutError::TooBig("bytes"));
                }
                Ok(Decision::Write(path))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_that_leave_the_directory_or_reach_git_are_refused() {
        let limits = CheckoutLimits::default();
        for bad in [
            "/etc/passwd",
            "../outside",
            "a/../../b",
            ".git/config",
            "sub/.GIT/hooks/pre-commit",
            ".git./config",
            ".git /config",
            "GIT~1/config",
            "a//b",
            "./a",
            "a\\..\\b",
            "C:/x",
            "a\0b",
            "",
        ] {
            assert!(safe_path(bad, &limits).is_err(), "{bad:?}");
        }
        for good in ["src/main.rs", ".gitignore", ".github/workflows/ci.yml", "a/.gitkeep", "dir.git/x"] {
            assert_eq!(safe_path(good, &limits).as_deref(), Ok(good));
        }
        let deep = vec!["d"; 65].join("/");
        assert!(safe_path(&deep, &limits).is_err());
        assert!(safe_path(&"x".repeat(1025), &limits).is_err());
    }

    #[test]
    fn symlinks_submodules_lfs_pointers_and_huge_files_are_recorded_not_written() {
        let mut checkout = Checkout::new(CheckoutLimits { max_file_bytes: 100, ..CheckoutLimits::default() });
        assert_eq!(
            checkout.decide("link", 0o120000, 11, b"/etc/shadow"),
            Ok(Decision::Record("link".into(), Recorded::Symlink("/etc/shadow".into())))
        );
        assert_eq!(
            checkout.decide("vendor/lib", 0o160000, 0, b""),
            Ok(Decision::Record("vendor/lib".into(), Recorded::Submodule))
        );
        let pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n";
        assert_eq!(
            checkout.decide("big.bin", 0o100644, pointer.len() as u64, pointer),
            Ok(Decision::Record("big.bin".into(), Recorded::LfsPointer))
        );
        assert_eq!(
            checkout.decide("huge.txt", 0o100644, 101, b"x"),
            Ok(Decision::Record("huge.txt".into(), Recorded::TooLarge(101)))
        );
        assert_eq!(checkout.decide("run.sh", 0o100755, 10, b"#!/bin/sh"), Ok(Decision::Write("run.sh".into())));
        assert_eq!(checkout.decide("odd", 0o040000, 0, b""), Err(CheckoutError::Mode(0o040000)));
    }

    #[test]
    fn a_checkout_stops_at_its_file_and_byte_limits() {
        let mut by_files = Checkout::new(CheckoutLimits { max_files: 2, ..CheckoutLimits::default() });
        assert!(by_files.decide("a", 0o100644, 1, b"a").is_ok());
        assert!(by_files.decide("b", 0o100644, 1, b"b").is_ok());
        assert_eq!(by_files.decide("c", 0o100644, 1, b"c"), Err(CheckoutError::TooBig("files")));
        let mut by_bytes = Checkout::new(CheckoutLimits { max_bytes: 10, ..CheckoutLimits::default() });
        assert!(by_bytes.decide("a", 0o100644, 6, b"a").is_ok());
        assert_eq!(by_bytes.decide("b", 0o100644, 6, b"b"), Err(CheckoutError::TooBig("bytes")));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever a tree names, an accepted path is relative, has no `.`/`..`/`.git` component
        /// and stays within the limits.
        #[test]
        fn accepted_paths_stay_inside(path in "[a-zA-Z0-9./\\\\:~ _-]{0,60}") {
            let limits = CheckoutLimits::default();
            if let Ok(p) = safe_path(&path, &limits) {
                prop_assert!(!p.starts_with('/') && !p.contains('\\') && !p.contains(':'));
                for c in p.split('/') {
                    prop_assert!(!c.is_empty() && c != "." && c != "..");
                    prop_assert!(!c.trim_end_matches(['.', ' ']).eq_ignore_ascii_case(".git"));
                }
            }
        }
    }
}

//! A private directory for one scan job, removed however the job ends.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A `0700` directory with a random name under `parent` (Lambda's `/tmp`), removed with
/// everything in it when dropped (an error or a panic included) or by [`JobDir::remove`].
#[derive(Debug)]
pub struct JobDir {
    path: Option<PathBuf>,
}

impl JobDir {
    /// Creates `parent/job-<32 hex>`; an existing directory of that name is an error, never reused.
    pub fn create(parent: &Path) -> io::Result<Self> {
        let path = parent.join(format!("job-{}", hex::encode(rand::random::<[u8; 16]>())));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path: Some(path) })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or_else(|| Path::new(""))
    }

    /// Removes the directory now, reporting a failure that `Drop` would swallow.
    pub fn remove(mut self) -> io::Result<()> {
        self.path.take().map_or(Ok(()), |path| remove_tree(&path))
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(error) = remove_tree(&path)
        {
            tracing::warn!(error.kind = %error.kind(), "a job directory could not be removed");
        }
    }
}

/// `remove_dir_all` does not follow symbolic links (CVE-2022-21658 fix); none are created anyway.
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn parent() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jobdir-test-{}", hex::encode(rand::random::<[u8; 6]>())));
        std::fs::create_dir(&dir).expect("parent");
        dir
    }

    #[test]
    fn a_job_directory_is_private_and_removed_when_dropped() {
        let parent = parent();
        let path = {
            let dir = JobDir::create(&parent).expect("create");
            std::fs::write(dir.path().join("file"), b"x").expect("write");
            let mode = std::fs::metadata(dir.path()).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
            dir.path().to_owned()
        };
        assert!(!path.exists());
        std::fs::remove_dir(&parent).expect("parent left empty");
    }

    #[test]
    fn a_panic_inside_the_job_still_removes_the_directory() {
        let parent = parent();
        let seen = std::sync::Mutex::new(None);
        let result = std::panic::catch_unwind(|| {
            let dir = JobDir::create(&parent).expect("create");
            std::fs::create_dir(dir.path().join("tree")).expect("mkdir");
            *seen.lock().expect("lock") = Some(dir.path().to_owned());
            panic!("the job failed");
        });
        assert!(result.is_err());
        let path = seen.into_inner().expect("lock").expect("path");
        assert!(!path.exists(), "{path:?} left behind");
        std::fs::remove_dir(&parent).expect("parent left empty");
    }

    #[test]
    fn explicit_removal_reports_and_names_are_not_reused() {
        let parent = parent();
        let first = JobDir::create(&parent).expect("first");
        let second = JobDir::create(&parent).expect("second");
        assert_ne!(first.path(), second.path());
        let path = first.path().to_owned();
        first.remove().expect("remove");
        assert!(!path.exists());
        drop(second);
        std::fs::remove_dir(&parent).expect("parent left empty");
    }
}

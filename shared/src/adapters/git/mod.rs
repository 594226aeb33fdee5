//! One commit of a project, fetched at depth 1 over git smart HTTP protocol v2 with gitoxide
//! through the pinned GitLab client, and written into a private job directory under the
//! checkout rules (security policy 8.3-8.4 and D; `git` itself is not on Lambda's image).
//!
//! All HTTP goes through [`GitlabClient::git_request`]: validated pinned addresses, https only,
//! the integration's CA, no redirects or proxies, the token only in a sensitive
//! `Authorization: Basic` header. gix never sees the token, a URL with credentials, git
//! configuration, hooks, a credential helper or a prompt.

mod bridge;
mod job_dir;
mod materialise;
mod protocol;
#[cfg(test)]
mod tests;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

pub use self::job_dir::JobDir;
use self::protocol::Failure;
use crate::adapters::gitlab::GitlabClient;
use crate::domain::checkout::{CheckoutError, CheckoutLimits, Recorded};
use crate::domain::scan::{CommitSha, valid_branch};

/// Longest accepted `path_with_namespace`.
const MAX_PROJECT_PATH: usize = 1024;
/// GitLab nests groups at most 20 deep.
const MAX_PROJECT_SEGMENTS: usize = 21;
/// Longest cleaned detail kept from a gix error.
const MAX_DETAIL: usize = 300;

/// Which commit of which project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSpec {
    /// `path_with_namespace` (`group/sub/project`): segments of `[A-Za-z0-9._-]`, no `.`/`..`,
    /// no leading `/`, not ending in `.git`.
    pub project_path: String,
    /// The commit to fetch; it is what is wanted and what is checked after the fetch.
    pub commit: CommitSha,
    /// A ref that points at the commit (`refs/merge-requests/3/head`, `refs/heads/main`), used
    /// only when the server refuses to send the commit by id.
    pub ref_name: Option<String>,
}

/// Bounds on one fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    /// Bytes received from the instance, all requests together.
    pub max_fetch_bytes: u64,
    /// Largest object the pack may inflate to (a compressed "zip bomb" stops here).
    pub max_object_bytes: u64,
    /// Fetch and checkout together.
    pub deadline: Duration,
    /// What the checkout may write.
    pub checkout: CheckoutLimits,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_fetch_bytes: 512 * 1024 * 1024,
            max_object_bytes: 256 * 1024 * 1024,
            deadline: Duration::from_secs(300),
            checkout: CheckoutLimits::default(),
        }
    }
}

/// A commit fetched and written.
#[derive(Debug)]
pub struct Fetched {
    /// The commit's files (`<job_dir>/tree`).
    pub tree_dir: PathBuf,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries not written: symlinks, submodules, LFS pointers, oversized files.
    pub recorded: Vec<(String, Recorded)>,
    /// Objects in the received pack (one commit, its trees and blobs).
    pub objects: u64,
    /// Bytes received from the instance.
    pub bytes_received: u64,
    /// Time from the first request to the indexed pack.
    pub fetch_ms: u64,
    /// Time to write the tree.
    pub checkout_ms: u64,
}

/// Why a fetch failed. The texts are safe to show: no token, no credentials, no file contents.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The project path or ref does not pass the rules of [`FetchSpec`].
    #[error("the project path or ref is not valid")]
    InvalidSpec,
    /// 401 from the git endpoint.
    #[error("the instance rejected the token for git access")]
    Unauthorized,
    /// 403: no read access to the code, or a token without `read_repository`.
    #[error("the token may not read this repository")]
    Forbidden,
    /// 404: no such project, or hidden from the token.
    #[error("the repository was not found")]
    NotFound,
    /// The commit is not in the repository (or the ref no longer points at it).
    #[error("the commit was not found in the repository")]
    CommitNotFound,
    /// Over [`FetchLimits::max_fetch_bytes`] or [`FetchLimits::max_object_bytes`].
    #[error("the repository is larger than a scan fetches")]
    TooLarge,
    /// Over [`FetchLimits::deadline`].
    #[error("the fetch did not finish in time")]
    Timeout,
    /// 429.
    #[error("the instance is rate limiting git requests")]
    RateLimited {
        /// From `Retry-After`, else `RateLimit-Reset`.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("the instance answered with status {status}")]
    Server {
        /// The status code.
        status: u16,
    },
    /// A 3xx: redirects are never followed.
    #[error("the instance answered with a redirect, which is not followed")]
    Redirected,
    /// Something this fetcher does not support (named).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The pack or an object in it could not be read.
    #[error("the fetched objects are incomplete or malformed")]
    Malformed,
    /// The tree breaks the checkout rules.
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    /// The job directory could not be written.
    #[error("the job directory could not be written")]
    Io(#[from] std::io::Error),
    /// The git conversation failed; a short, cleaned description.
    #[error("git transport failed: {0}")]
    Transport(String),
}

impl FetchError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::RateLimited { .. } | Self::Server { .. } | Self::Transport(_))
    }
}

/// Fetches `spec.commit` of `spec.project_path` at depth 1 into `job_dir/.objects` and writes
/// its tree into `job_dir/tree` (neither may exist yet). `job_dir` should be a [`JobDir`].
#[tracing::instrument(skip_all, fields(commit = %spec.commit))]
pub async fn fetch_commit(
    client: &GitlabClient,
    spec: &FetchSpec,
    job_dir: &Path,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    if !valid_project_path(&spec.project_path) || spec.ref_name.as_deref().is_some_and(|r| !valid_ref(r)) {
        return Err(FetchError::InvalidSpec);
    }
    let want = gix_hash::ObjectId::from_hex(spec.commit.as_str().as_bytes())
        .ok()
        .filter(|id| id.kind() == gix_hash::Kind::Sha1)
        .ok_or(FetchError::Unsupported("SHA-256 repositories"))?;
    let repo_url = format!("{}/{}.git", client.instance().url.base_url(), spec.project_path);
    let objects_dir = job_dir.join(".objects");
    let tree_dir = job_dir.join("tree");
    for dir in [&objects_dir, &objects_dir.join("pack")] {
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    }

    let deadline = Instant::now() + limits.deadline;
    let interrupt = Arc::new(AtomicBool::new(false));
    // Also when this future is dropped mid-fetch (a caller's own timeout): the thread stops.
    let _stop = StopOnDrop(Arc::clone(&interrupt));
    let (calls, requests) = mpsc::channel(1);
    let job = Job {
        repo_url,
        want,
        ref_name: spec.ref_name.clone(),
        objects_dir,
        tree_dir: tree_dir.clone(),
        limits: *limits,
    };
    let mut worker = {
        let interrupt = Arc::clone(&interrupt);
        tokio::task::spawn_blocking(move || job.run(bridge::PinnedHttp::new(calls), &interrupt))
    };

    let mut wire = bridge::Wire::new(client, deadline, limits.max_fetch_bytes);
    let in_time = tokio::time::timeout_at(deadline, async {
        wire.serve(requests).await;
        (&mut worker).await
    });
    let joined = match in_time.await {
        Ok(joined) => joined,
        Err(_) => {
            // Dropping the serving future closed every channel gix waits on; the flag stops pack
            // indexing and checkout. Waiting for the thread keeps it from writing into a job
            // directory the caller is about to remove.
            interrupt.store(true, Ordering::Relaxed);
            wire.fail(FetchError::Timeout);
            worker.await
        }
    };
    let outcome = match joined {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(FetchError::Transport("the fetch was cancelled".into())),
    };
    match (outcome, wire.failure) {
        (Ok(work), None) => {
            tracing::debug!(
                files = work.written.files,
                bytes = work.written.bytes,
                objects = work.objects,
                bytes_received = wire.received,
                "commit fetched"
            );
            Ok(Fetched {
                tree_dir,
                files: work.written.files,
                bytes: work.written.bytes,
                recorded: work.written.recorded,
                objects: work.objects,
                bytes_received: wire.received,
                fetch_ms: millis(work.fetch),
                checkout_ms: millis(work.checkout),
            })
        }
        // What the wire saw (a 401, the byte limit, the deadline) explains gix's error best.
        (_, Some(failure)) => Err(failure),
        (Err(error), None) => Err(error),
    }
}

/// Raises the interrupt flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Work {
    objects: u64,
    written: materialise::Written,
    fetch: Duration,
    checkout: Duration,
}

/// The blocking half's inputs.
struct Job {
    repo_url: String,
    want: gix_hash::ObjectId,
    ref_name: Option<String>,
    objects_dir: PathBuf,
    tree_dir: PathBuf,
    limits: FetchLimits,
}

impl Job {
    /// Fetch, check the commit arrived, write the tree.
    fn run(&self, http: bridge::PinnedHttp, interrupt: &AtomicBool) -> Result<Work, FetchError> {
        let started = std::time::Instant::now();
        let max_object_bytes = usize::try_from(self.limits.max_object_bytes).unwrap_or(usize::MAX);
        let ref_name = self.ref_name.as_deref();
        let received = protocol::fetch_pack(
            &http,
            &self.repo_url,
            self.want,
            ref_name,
            &self.objects_dir,
            max_object_bytes,
            interrupt,
        );
        // The last sender: the async side stops serving once it is gone.
        drop(http);
        let received = received.map_err(|failure| match failure {
            Failure::NotOurRef | Failure::RefMoved => FetchError::CommitNotFound,
            Failure::Unsupported(what) => FetchError::Unsupported(what),
            Failure::Gix(text) => {
                tracing::debug!(error.message = %text, "git fetch failed");
                FetchError::Transport(clean(&text))
            }
        })?;
        let fetch = started.elapsed();
        let objects = gix_odb::at(&self.objects_dir, gix_hash::Kind::Sha1)?;
        let started = std::time::Instant::now();
        let written = materialise::materialise(&objects, &self.want, &self.tree_dir, self.limits.checkout, interrupt)?;
        Ok(Work { objects: received.objects, written, fetch, checkout: started.elapsed() })
    }
}

/// gix's text without control characters, bounded. It cannot hold the token (gix never has it)
/// and the repository URL carries no credentials.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(MAX_DETAIL).collect()
}

/// `path_with_namespace` as clone URLs may be built from (security policy 8.3).
fn valid_project_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    !path.is_empty()
        && path.len() <= MAX_PROJECT_PATH
        && segments.len() <= MAX_PROJECT_SEGMENTS
        && !path.ends_with(".git")
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && !s.starts_with('-')
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// A full ref name that passes `git check-ref-format`, with no component starting with `-`.
fn valid_ref(name: &str) -> bool {
    name.starts_with("refs/")
        && valid_branch(name)
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.split('/').any(|c| c.starts_with(['.', '-']))
}

//! Where the code comes from: the integration's GitLab, through the pinned client, with the
//! token read from the vault for this job only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use shared::adapters::git::{FetchError, FetchLimits, FetchSpec, fetch_commit};
use shared::adapters::gitlab::{GitlabClient, ReqwestGitlab};
use shared::domain::checkout::Recorded;
use shared::domain::gitlab::GitlabError;
use shared::domain::integration::Integration;
use shared::domain::scan::CommitSha;
use shared::domain::url_policy::{InstanceUrl, UrlPolicy};
use shared::ports::{GitlabGateway, MergeRequestGateway};

/// What to fetch.
#[derive(Clone, Debug)]
pub struct Want {
    /// GitLab project id.
    pub project_id: u64,
    /// `group/project`.
    pub project_path: String,
    /// The commit, when known.
    pub sha: Option<CommitSha>,
    /// The ref that points at it (`refs/merge-requests/<iid>/head` or `refs/heads/<branch>`).
    pub ref_name: String,
    /// For a branch scan without a commit: the branch whose head to read.
    pub branch: Option<String>,
}

/// A commit written out into the job directory.
#[derive(Debug)]
pub struct Tree {
    /// The commit that was fetched.
    pub sha: CommitSha,
    /// Where its tree is.
    pub dir: PathBuf,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries kept out.
    pub recorded: Vec<(String, Recorded)>,
    /// Bytes received.
    pub bytes_received: u64,
    /// Fetch time.
    pub fetch_ms: u64,
    /// Checkout time.
    pub checkout_ms: u64,
}

/// Why the code could not be had, for the scan record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// Stable code.
    pub code: &'static str,
    /// One sentence, safe to show.
    pub message: String,
    /// Whether trying again later may help (the message is then retried, not failed).
    pub retryable: bool,
}

impl SourceError {
    fn new(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Self { code, message: message.into(), retryable }
    }
}

/// Fetches one commit of one project into a directory.
#[async_trait]
pub trait CodeSource: Send + Sync {
    /// Fetches `want` into `job_dir` (which the caller owns and removes).
    async fn fetch(
        &self,
        integration: &Integration,
        token: SecretString,
        want: &Want,
        job_dir: &Path,
    ) -> Result<Tree, SourceError>;

    /// A client for writing the report into GitLab, after the same instance checks as a fetch.
    async fn gateway(
        &self,
        integration: &Integration,
        token: SecretString,
    ) -> Result<Arc<dyn MergeRequestGateway>, SourceError>;
}

/// The real source: DNS and address checks of the integration's instance, the pinned client,
/// `GET /projects/:id/repository/branches/:branch` for a branch head, then the fetch.
pub struct GitlabSource {
    /// Resolver, roots and settings.
    pub gitlab: ReqwestGitlab,
    /// URL rules, re-checked for every job.
    pub policy: UrlPolicy,
    /// Fetch and checkout bounds.
    pub limits: FetchLimits,
}

#[derive(serde::Deserialize)]
struct Branch {
    commit: BranchCommit,
}

#[derive(serde::Deserialize)]
struct BranchCommit {
    id: String,
}

fn from_gitlab(e: &GitlabError) -> SourceError {
    match e {
        GitlabError::Unauthorized | GitlabError::TokenExpired | GitlabError::TokenRevoked => {
            SourceError::new("token_invalid", "GitLab refused the integration's token.", false)
        }
        GitlabError::InsufficientScope { .. } | GitlabError::Forbidden => {
            SourceError::new("insufficient_scope", "The token may not read this repository.", false)
        }
        GitlabError::NotFound => {
            SourceError::new("ref_not_found", "GitLab does not know this branch or project.", false)
        }
        GitlabError::RateLimited { .. } => SourceError::new("rate_limited", "GitLab asked to slow down.", true),
        _ => SourceError::new("instance_unreachable", "GitLab could not be reached or did not answer.", true),
    }
}

fn from_fetch(e: &FetchError) -> SourceError {
    let message = e.to_string();
    match e {
        FetchError::Unauthorized => SourceError::new("token_invalid", message, false),
        FetchError::Forbidden => SourceError::new("insufficient_scope", message, false),
        FetchError::InvalidSpec | FetchError::Unsupported(_) => {
            SourceError::new("unsupported_repository", message, false)
        }
        FetchError::Malformed => SourceError::new("malformed_repository", message, false),
        FetchError::Redirected => SourceError::new("not_gitlab", message, false),
        FetchError::NotFound => SourceError::new("repository_not_found", message, false),
        FetchError::CommitNotFound => SourceError::new("commit_not_found", message, false),
        FetchError::TooLarge => SourceError::new("repository_too_large", message, false),
        FetchError::Timeout => SourceError::new("timeout", message, false),
        FetchError::Checkout(_) => SourceError::new("unsafe_repository", message, false),
        _ => SourceError::new("fetch_failed", message, e.is_retryable()),
    }
}

impl GitlabSource {
    /// The instance URL re-checked, its addresses resolved and checked, and a client pinned to them.
    async fn client(&self, integration: &Integration, token: SecretString) -> Result<GitlabClient, SourceError> {
        let url = InstanceUrl::parse(&integration.instance_url, &self.policy)
            .map_err(|r| SourceError::new("invalid_instance_url", r.message, false))?;
        let instance =
            self.gitlab.resolve(&url).await.map_err(|r| SourceError::new("instance_unreachable", r.message, true))?;
        self.gitlab
            .client(&instance, integration.instance.ca_certificate.as_deref(), token)
            .map_err(|e| from_gitlab(&e))
    }
}

#[async_trait]
impl CodeSource for GitlabSource {
    async fn gateway(
        &self,
        integration: &Integration,
        token: SecretString,
    ) -> Result<Arc<dyn MergeRequestGateway>, SourceError> {
        Ok(Arc::new(self.client(integration, token).await?))
    }

    async fn fetch(
        &self,
        integration: &Integration,
        token: SecretString,
        want: &Want,
        job_dir: &Path,
    ) -> Result<Tree, SourceError> {
        let client = self.client(integration, token).await?;
        let sha = match (&want.sha, &want.branch) {
            (Some(sha), _) => sha.clone(),
            (None, Some(branch)) => {
                let encoded: String = url::form_urlencoded::byte_serialize(branch.as_bytes()).collect();
                let found: Branch = client
                    .get(&format!("/projects/{}/repository/branches/{encoded}", want.project_id))
                    .await
                    .map_err(|e| from_gitlab(&e))?;
                CommitSha::parse(&found.commit.id).ok_or_else(|| {
                    SourceError::new("not_gitlab", "GitLab answered with an invalid commit id.", false)
                })?
            }
            (None, None) => return Err(SourceError::new("commit_not_found", "No commit to scan was named.", false)),
        };
        let spec = FetchSpec {
            project_path: want.project_path.clone(),
            commit: sha.clone(),
            ref_name: Some(want.ref_name.clone()),
        };
        let fetched = fetch_commit(&client, &spec, job_dir, &self.limits).await.map_err(|e| from_fetch(&e))?;
        Ok(Tree {
            sha,
            dir: fetched.tree_dir,
            files: fetched.files,
            bytes: fetched.bytes,
            recorded: fetched.recorded,
            bytes_received: fetched.bytes_received,
            fetch_ms: fetched.fetch_ms,
            checkout_ms: fetched.checkout_ms,
        })
    }
}

//! Ports: one small trait per external capability. Functions hold them as `Arc<dyn _>` so
//! handlers run unchanged against AWS, the local stand-ins or the in-memory fakes.

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::domain::ids::{IntegrationId, TeamId};
use std::collections::{BTreeMap, HashMap};

use crate::domain::findings::{Finding, ScanRecord, Triage};
use crate::domain::integration::{Integration, IntegrationStatus, TokenReport};
use crate::domain::listing::{Listed, ListedProject, ListingReport, ListingSettings};
use crate::domain::project::{Project, ProjectSnapshot, StoredRef};
use crate::domain::sync::{Checkpoint, QueuedSync, SyncRun, SyncStatus};
use crate::domain::url_policy::{InstanceUrl, UrlRejection};
use crate::domain::webhook::{SigningKey, VulnerabilityChange};
use crate::messages::Message;

/// Failure of a storage, queue or secret back end.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A conditional write found the item in an unexpected state.
    #[error("conflicting write")]
    Conflict,
    /// The item or secret does not exist.
    #[error("not found")]
    NotFound,
    /// Stored data could not be read back (schema drift, corruption).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The back end failed or could not be reached; retrying may help.
    #[error("back end unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PortError {
    /// Wraps any error as [`PortError::Unavailable`].
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }

    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Integrations, always addressed through their team.
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Stores a new integration; `Conflict` if the id exists.
    async fn insert(&self, integration: &Integration) -> Result<(), PortError>;
    /// Reads one integration of a team; another team's id reads as `None`.
    async fn get(&self, team: &TeamId, id: &IntegrationId) -> Result<Option<Integration>, PortError>;
    /// All integrations of a team.
    async fn list(&self, team: &TeamId) -> Result<Vec<Integration>, PortError>;
    /// Replaces an integration if it still has `expected_updated_at` (optimistic concurrency);
    /// `Conflict` if another request changed it, `NotFound` if it was deleted meanwhile.
    async fn update(&self, integration: &Integration, expected_updated_at: OffsetDateTime) -> Result<(), PortError>;
    /// Deletes the integration and every item that belongs to it.
    async fn delete(&self, team: &TeamId, id: &IntegrationId) -> Result<(), PortError>;
    /// Counts one event in a per-team fixed window (`window` names it, e.g. `connect#<minute>`)
    /// and returns the count so far, the current event included.
    async fn count_in_window(&self, team: &TeamId, window: &str, expires_at: OffsetDateTime) -> Result<u64, PortError>;
}

/// A GitLab token bound to the origin it was validated against.
#[derive(Clone)]
pub struct StoredToken {
    /// Base URL the token belongs to; callers refuse to send it anywhere else.
    pub origin: String,
    /// The token.
    pub token: SecretString,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken").field("origin", &self.origin).field("token", &"[redacted]").finish()
    }
}

/// Where tokens live (Secrets Manager in AWS); nothing else ever holds them.
#[async_trait]
pub trait TokenVault: Send + Sync {
    /// Creates the integration's secret, tagged with team and id; returns its reference.
    async fn create(&self, team: &TeamId, id: &IntegrationId, value: &StoredToken) -> Result<String, PortError>;
    /// Reads the current version.
    async fn read(&self, secret_ref: &str) -> Result<StoredToken, PortError>;
    /// Writes a new current version; the old one stays readable as the previous version.
    async fn replace(&self, secret_ref: &str, value: &StoredToken) -> Result<(), PortError>;
    /// Deletes the secret at once, without a recovery window. Missing secrets are not an error.
    async fn delete(&self, secret_ref: &str) -> Result<(), PortError>;
}

/// Outgoing queue messages.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends one message.
    async fn send(&self, message: &Message) -> Result<(), PortError>;
    /// Sends many; adapters batch them (SQS: ten per call).
    async fn send_all(&self, messages: &[Message]) -> Result<(), PortError> {
        for m in messages {
            self.send(m).await?;
        }
        Ok(())
    }
}

/// Cross-team reads for the workers and the webhook (never given to the frontend functions).
#[async_trait]
pub trait IntegrationDirectory: Send + Sync {
    /// Every integration with its team and status (the scheduled fan-out).
    async fn all_integrations(&self) -> Result<Vec<(TeamId, IntegrationId, IntegrationStatus)>, PortError>;
    /// One integration by id alone (a webhook delivery names only the id); the caller then
    /// acts within the integration's own team.
    async fn find(&self, id: &IntegrationId) -> Result<Option<Integration>, PortError>;
}

/// A webhook delivery as recorded for deduplication, with the messages it produced.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// Owning team.
    pub team_id: TeamId,
    /// Integration.
    pub integration_id: IntegrationId,
    /// Deduplication key ([`crate::domain::webhook::dedup_key`]).
    pub key: String,
    /// Event kind, for operators.
    pub event: String,
    /// Messages to send to the scan queue (empty when the delivery only changes state).
    pub messages: Vec<Message>,
    /// When it arrived.
    pub recorded_at: OffsetDateTime,
    /// Random id of this receipt: a write retried after a timeout finds its own record and
    /// is not mistaken for a duplicate.
    pub attempt: String,
}

/// Whether a delivery was new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// First time this key was seen (within the record's lifetime).
    New,
    /// Seen before: nothing more to do.
    Duplicate,
}

/// Delivery records: one conditional write per delivery, and an outbox of those whose
/// messages could not be queued.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Records a delivery unless its key exists; the record expires at `expires_at`.
    async fn record(&self, delivery: &DeliveryRecord, expires_at: OffsetDateTime) -> Result<Recorded, PortError>;
    /// Marks a recorded delivery's messages as not sent, for the scheduled replay.
    async fn mark_unsent(&self, delivery: &DeliveryRecord) -> Result<(), PortError>;
    /// Up to `limit` deliveries marked unsent, oldest first.
    async fn unsent(&self, limit: usize) -> Result<Vec<DeliveryRecord>, PortError>;
    /// Clears the unsent mark once the messages are queued.
    async fn mark_sent(&self, delivery: &DeliveryRecord) -> Result<(), PortError>;
}

/// The state the webhook reads and changes besides deliveries.
#[async_trait]
pub trait WebhookStateStore: Send + Sync {
    /// Whether a project exists under the integration, is not removed and is tracked.
    async fn is_tracked(&self, team: &TeamId, id: &IntegrationId, project_id: u64) -> Result<bool, PortError>;
    /// Sets an active integration's status to `token_expiring` (GitLab said so).
    async fn set_token_expiring(&self, team: &TeamId, id: &IntegrationId, now: OffsetDateTime)
    -> Result<(), PortError>;
    /// Records that an authenticated delivery for a project arrived (the project's webhook
    /// health); a project that does not exist is left alone.
    async fn record_delivery_seen(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        at: OffsetDateTime,
    ) -> Result<(), PortError>;
    /// Keeps GitLab's latest state of one of its vulnerabilities.
    async fn record_vulnerability(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        change: &VulnerabilityChange,
        now: OffsetDateTime,
    ) -> Result<(), PortError>;
}

/// Standard Webhooks signing keys, each in its own secret that the webhook function may read
/// and the token readers need not (never next to a GitLab token).
#[async_trait]
pub trait SigningKeyVault: Send + Sync {
    /// Creates a key's secret, tagged with team and id; returns its reference.
    async fn create(&self, team: &TeamId, id: &IntegrationId, key: &SigningKey) -> Result<String, PortError>;
    /// The keys accepted now: the current one first, then one a rotation replaced, during its
    /// grace period.
    async fn read(&self, key_ref: &str) -> Result<Vec<SigningKey>, PortError>;
    /// Deletes a key at once; a missing one is not an error.
    async fn delete(&self, key_ref: &str) -> Result<(), PortError>;
}

/// One write a sync makes for a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectWrite {
    /// A new project, untracked.
    Add(ProjectSnapshot),
    /// A changed or returning project: the snapshot only, tracking and languages kept.
    Update(ProjectSnapshot),
    /// A project a completed full pass no longer saw (RFC 3339 time).
    Remove(u64, String),
}

/// The projects of an integration.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Fingerprints and flags of every stored project, for reconciling a listing.
    async fn stored_refs(&self, team: &TeamId, id: &IntegrationId) -> Result<HashMap<u64, StoredRef>, PortError>;
    /// Applies writes (batched where DynamoDB allows); returns the number of write calls made.
    async fn write_projects(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        sync_id: &str,
        writes: &[ProjectWrite],
    ) -> Result<u64, PortError>;
    /// Stores a project's languages (JSON object of name to percentage) and the fingerprint of
    /// the state the lookup confirmed.
    async fn set_details(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        languages: &BTreeMap<String, f64>,
        fingerprint: &str,
    ) -> Result<(), PortError>;
    /// A page of stored, not removed projects in id order, filtered.
    async fn list_projects(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        query: &ProjectQuery,
    ) -> Result<ProjectPage, PortError>;
    /// Projects that are tracked or still have a managed hook.
    async fn hook_targets(
        &self,
        team: &TeamId,
        id: &IntegrationId,
    ) -> Result<Vec<crate::domain::project::HookTarget>, PortError>;
    /// Records a project's managed hook (`None`: it has none any more).
    async fn set_hook(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        hook: Option<&crate::domain::project::HookRecord>,
    ) -> Result<(), PortError>;
    /// Tracks and untracks projects that exist (not removed) under the integration, unless
    /// some ids do not or the integration would then track more than `max_tracked` projects;
    /// either way nothing changes.
    async fn set_tracking(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        track: &[u64],
        untrack: &[u64],
        max_tracked: Option<u64>,
    ) -> Result<TrackingResult, PortError>;
}

/// What became of a tracking change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackingResult {
    /// Applied.
    Done,
    /// These ids are not (or no longer) projects of the integration.
    Unknown(Vec<u64>),
    /// The integration would track `would_track` projects, more than `max`.
    OverLimit {
        /// Tracked projects after the change.
        would_track: u64,
        /// The limit.
        max: u64,
    },
}

/// Filters and position of a repository listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectQuery {
    /// List ids greater than this (the previous page's cursor).
    pub after: Option<u64>,
    /// Page size (1-100).
    pub limit: u32,
    /// Only tracked (true) or untracked (false) projects.
    pub tracked: Option<bool>,
    /// Case-insensitive substring of `path_with_namespace`.
    pub search: Option<String>,
}

/// One page of projects and where the next starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectPage {
    /// The projects.
    pub items: Vec<Project>,
    /// Cursor of the next page, if there may be one.
    pub next_after: Option<u64>,
}

/// Sync coordination: one run at a time per integration, and the run records.
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// Takes the integration's sync lease until `until` unless another holder has an unexpired
    /// one; `Ok(false)` when someone else holds it.
    async fn acquire_lease(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        holder: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, PortError>;
    /// Gives the lease back if `holder` still has it.
    async fn release_lease(&self, team: &TeamId, id: &IntegrationId, holder: &str) -> Result<(), PortError>;
    /// Records a run: as current while running, as last once finished.
    async fn save_run(&self, team: &TeamId, id: &IntegrationId, run: &SyncRun) -> Result<(), PortError>;
    /// Current and last run, the queued request and the lease.
    async fn sync_status(&self, team: &TeamId, id: &IntegrationId) -> Result<SyncStatus, PortError>;
    /// Records a requested run. With a `cooldown` (manual requests), only unless another manual
    /// request came less than that before `now` (`Ok(false)`); without one (the syncs connect
    /// and rotation queue), always, and the cooldown is left as it was. A run that starts
    /// clears it (see `save_run`).
    async fn queue_request(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        queued: &QueuedSync,
        now: OffsetDateTime,
        cooldown: Option<std::time::Duration>,
    ) -> Result<bool, PortError>;
    /// Forgets `queued` (its message could not be sent), cooldown included, if it is still the
    /// queued request.
    async fn clear_queued(&self, team: &TeamId, id: &IntegrationId, queued: &QueuedSync) -> Result<(), PortError>;
}

/// Checkpoints of passes in progress.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Appends `checkpoint.seen` after the `checkpoint.parts` parts already stored and makes
    /// the checkpoint current (the parts are written first, so a crash in between leaves the
    /// previous checkpoint intact); returns the number of parts now stored.
    async fn save_checkpoint(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        checkpoint: &Checkpoint,
    ) -> Result<u32, PortError>;
    /// The checkpoint, if a run left one.
    async fn load_checkpoint(&self, team: &TeamId, id: &IntegrationId) -> Result<Option<Checkpoint>, PortError>;
    /// Removes it once the pass is complete (or abandoned).
    async fn clear_checkpoint(&self, team: &TeamId, id: &IntegrationId) -> Result<(), PortError>;
}

/// An instance URL whose host was resolved and whose every address passed the address policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedInstance {
    /// The validated URL.
    pub url: InstanceUrl,
    /// The only addresses connections may use.
    pub addresses: Vec<std::net::IpAddr>,
}

/// Talks to GitLab instances on behalf of the connect and sync flows.
#[async_trait]
pub trait GitlabGateway: Send + Sync {
    /// Resolves the host once and classifies every answer (security policy 8.2).
    async fn resolve(&self, url: &InstanceUrl) -> Result<ResolvedInstance, UrlRejection>;
    /// Finds out who the token is, what it may do and when it expires.
    async fn inspect_token(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
    ) -> Result<TokenReport, crate::domain::gitlab::GitlabError>;
    /// Lists every project the token can reach, sending pages to `pages` as they arrive.
    async fn list_projects(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        settings: ListingSettings,
        pages: tokio::sync::mpsc::Sender<Listed>,
    ) -> ListingReport;
    /// `GET /projects/:id`: the full entity (with `empty_repo`, `archived`, `visibility`).
    async fn project_details(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
    ) -> Result<ListedProject, crate::domain::gitlab::GitlabError>;
    /// `GET /projects/:id/languages`: language name to percentage.
    async fn project_languages(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
    ) -> Result<BTreeMap<String, f64>, crate::domain::gitlab::GitlabError>;
}

/// Project hooks on a GitLab instance (for the functions that already hold GitLab tokens).
#[async_trait]
pub trait GitlabHooks: Send + Sync {
    /// `POST /projects/:id/hooks`.
    async fn create_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        spec: &crate::domain::hooks::HookSpec,
    ) -> Result<crate::domain::hooks::GitlabHook, crate::domain::gitlab::GitlabError>;
    /// `GET /projects/:id/hooks/:hook_id`.
    async fn get_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<crate::domain::hooks::GitlabHook, crate::domain::gitlab::GitlabError>;
    /// `PUT /projects/:id/hooks/:hook_id` with every attribute (the token again: a changed URL
    /// resets it).
    async fn update_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
        spec: &crate::domain::hooks::HookSpec,
    ) -> Result<crate::domain::hooks::GitlabHook, crate::domain::gitlab::GitlabError>;
    /// `DELETE /projects/:id/hooks/:hook_id`; a hook already gone is not an error.
    async fn delete_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<(), crate::domain::gitlab::GitlabError>;
    /// `POST /projects/:id/hooks/:hook_id/test/push_events`: whether the test delivery
    /// succeeded (GitLab then enables a disabled hook again).
    async fn test_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<bool, crate::domain::gitlab::GitlabError>;
}

/// What managed hooks are given: the secret token and, on GitLab 19.0+, the signing key.
pub struct HookSecrets {
    /// The webhook secret token.
    pub token: SecretString,
    /// The Standard Webhooks signing key, when deliveries are signed.
    pub signing_key: Option<SigningKey>,
}

/// The webhook secret (and signing key) of integrations whose hooks the connector manages
/// (GitLab must be given them). Never a GitLab token.
#[async_trait]
pub trait HookSecretVault: Send + Sync {
    /// Stores them, tagged with team and id; returns the reference.
    async fn create(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        secret: &SecretString,
        signing_key: Option<&SigningKey>,
    ) -> Result<String, PortError>;
    /// Reads them.
    async fn read(&self, secret_ref: &str) -> Result<HookSecrets, PortError>;
    /// Rotation: stores the new secret token and, where deliveries are signed, a new signing
    /// key (returned, to be shown once); the previous key stays accepted until `grace_until`.
    async fn rotate(
        &self,
        secret_ref: &str,
        secret: &SecretString,
        grace_until: OffsetDateTime,
    ) -> Result<Option<SigningKey>, PortError>;
    /// Deletes them at once; a missing one is not an error.
    async fn delete(&self, secret_ref: &str) -> Result<(), PortError>;
}

/// Where a scan stands against newer requests for its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetCheck {
    /// The newest request of the target.
    Current,
    /// A newer commit of the target was asked for.
    Superseded,
    /// The merge request was merged or closed after the request.
    Cancelled,
}

/// One page of a listing and the cursor of the next.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, if there may be one.
    pub next: Option<String>,
}

/// Scans, their findings, the pointers that make scans of one target supersede each other, and
/// the triage of findings. Everything lives under the integration's partition.
#[async_trait]
pub trait ScanStore: Send + Sync {
    /// The stored project (any state), for the worker's and the api's checks.
    async fn project(&self, team: &TeamId, id: &IntegrationId, project_id: u64) -> Result<Option<Project>, PortError>;
    /// Stores a scan record (create or overwrite).
    async fn save_scan(&self, team: &TeamId, id: &IntegrationId, scan: &ScanRecord) -> Result<(), PortError>;
    /// A scan of the integration.
    async fn scan(&self, team: &TeamId, id: &IntegrationId, scan_id: &str) -> Result<Option<ScanRecord>, PortError>;
    /// Scans newest first, optionally of one project, after a cursor.
    async fn list_scans(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: Option<u64>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<ScanRecord>, PortError>;
    /// Claims a scan key for `scan_id` (taking it over from `replacing` when that scan holds
    /// it); `Some(holder)` when another scan holds it.
    async fn claim(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        scan_key: &str,
        scan_id: &str,
        replacing: Option<&str>,
    ) -> Result<Option<String>, PortError>;
    /// Makes `scan_id` (requested at `requested_ms`) the newest request of its target unless a
    /// later request is recorded; returns whether it is the newest.
    async fn set_latest(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
        scan_id: &str,
        requested_ms: i64,
    ) -> Result<bool, PortError>;
    /// Whether `scan_id` (requested at `requested_ms`) is still the one to run for its target.
    async fn check_target(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
        scan_id: &str,
        requested_ms: i64,
    ) -> Result<TargetCheck, PortError>;
    /// Records that pending scans of a target are cancelled as of `at_ms`; returns the newest
    /// requested scan of the target.
    async fn cancel_target(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
        at_ms: i64,
    ) -> Result<Option<String>, PortError>;
    /// The newest succeeded scan of a target.
    async fn last_succeeded(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
    ) -> Result<Option<String>, PortError>;
    /// Stores a finished scan's findings (in the order given), refreshes each fingerprint's
    /// latest view (keeping its triage), then the scan record, then the target's last succeeded
    /// scan (only ever forward).
    async fn store_results(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        scan: &ScanRecord,
        findings: &[Finding],
    ) -> Result<(), PortError>;
    /// A page of a scan's findings, with their current triage.
    async fn findings(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        scan_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Finding>, PortError>;
    /// The triage of fingerprints (absent: open).
    async fn triage(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        fingerprints: &[String],
    ) -> Result<HashMap<String, Triage>, PortError>;
    /// Sets a finding's triage; `None` when the integration has no such finding.
    async fn set_triage(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        fingerprint: &str,
        triage: Triage,
        now: OffsetDateTime,
    ) -> Result<Option<Finding>, PortError>;
}

/// A merge request's diff versions (`diff_refs`): inline positions are given against them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct DiffRefs {
    /// Merge base of target and source.
    pub base_sha: String,
    /// Target branch head when the version was made.
    pub start_sha: String,
    /// Source head.
    pub head_sha: String,
}

/// A merge request, as reporting needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeRequestInfo {
    /// `opened`, `closed`, `merged`, `locked`.
    pub state: String,
    /// The branch the merge request merges from.
    pub source_branch: String,
    /// The merge request's page.
    pub web_url: String,
    /// The latest version's SHAs; GitLab may not have computed them yet.
    pub diff_refs: Option<DiffRefs>,
}

/// One file of a merge request's diff.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct FileDiff {
    /// Path before.
    pub old_path: String,
    /// Path after.
    pub new_path: String,
    /// Unified diff hunks (empty when GitLab left them out as too large).
    #[serde(default)]
    pub diff: String,
    /// Whether the file was deleted.
    #[serde(default)]
    pub deleted_file: bool,
}

/// A note as the report reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteRef {
    /// Note id.
    pub id: u64,
    /// Body.
    pub body: String,
}

/// A new-line position in a merge request diff (`position_type: text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinePosition {
    /// The diff version.
    pub refs: DiffRefs,
    /// Path before.
    pub old_path: String,
    /// Path after.
    pub new_path: String,
    /// The added line.
    pub new_line: u32,
}

/// What the scan worker writes to one project of the integration's GitLab
/// (gitlab-api.md 5.2-5.4 and commit statuses), through a client bound to one instance and token.
#[async_trait]
pub trait MergeRequestGateway: Send + Sync {
    /// How long to hold back before the next call, from the instance's `RateLimit-*` headers.
    fn pause(&self) -> Option<std::time::Duration> {
        None
    }
    /// `GET /projects/:id/merge_requests/:iid`.
    async fn merge_request(
        &self,
        project_id: u64,
        iid: u64,
    ) -> Result<MergeRequestInfo, crate::domain::gitlab::GitlabError>;
    /// `GET …/diffs`, at most `max_files` files.
    async fn diffs(
        &self,
        project_id: u64,
        iid: u64,
        max_files: usize,
    ) -> Result<Vec<FileDiff>, crate::domain::gitlab::GitlabError>;
    /// The first note by `author_id` whose body starts with `prefix` (`GET …/notes`, oldest first).
    async fn find_note(
        &self,
        project_id: u64,
        iid: u64,
        author_id: u64,
        prefix: &str,
    ) -> Result<Option<NoteRef>, crate::domain::gitlab::GitlabError>;
    /// `POST …/notes`: the new note's id.
    async fn create_note(
        &self,
        project_id: u64,
        iid: u64,
        body: &str,
    ) -> Result<u64, crate::domain::gitlab::GitlabError>;
    /// `PUT …/notes/:note_id`.
    async fn update_note(
        &self,
        project_id: u64,
        iid: u64,
        note_id: u64,
        body: &str,
    ) -> Result<(), crate::domain::gitlab::GitlabError>;
    /// `POST …/discussions` with a position: the discussion id.
    async fn create_thread(
        &self,
        project_id: u64,
        iid: u64,
        body: &str,
        position: &LinePosition,
    ) -> Result<String, crate::domain::gitlab::GitlabError>;
    /// `POST …/discussions/:id/notes` then `PUT …/discussions/:id?resolved=true`.
    async fn reply_and_resolve(
        &self,
        project_id: u64,
        iid: u64,
        discussion_id: &str,
        body: &str,
    ) -> Result<(), crate::domain::gitlab::GitlabError>;
    /// `POST /projects/:id/repository/commits` on `branch`, started afresh from `start_sha`
    /// (`force`: the branch is the connector's own), updating each file to the given content.
    async fn commit_files(
        &self,
        project_id: u64,
        branch: &str,
        start_sha: &str,
        message: &str,
        files: &BTreeMap<String, String>,
    ) -> Result<(), crate::domain::gitlab::GitlabError>;
    /// Opens a merge request from `source` into `target`, or, when GitLab answers 409 because
    /// one is open for `source`, updates that one; returns its iid.
    async fn open_merge_request(
        &self,
        project_id: u64,
        source: &str,
        target: &str,
        title: &str,
        description: &str,
    ) -> Result<u64, crate::domain::gitlab::GitlabError>;
    /// `PUT /projects/:id/merge_requests/:iid` with `state_event=close`.
    async fn close_merge_request(&self, project_id: u64, iid: u64) -> Result<(), crate::domain::gitlab::GitlabError>;
    /// GraphQL `vulnerabilityCreate` (GitLab Ultimate): the new vulnerability's global id.
    async fn create_vulnerability(
        &self,
        project_id: u64,
        vulnerability: &crate::domain::report::VulnerabilityExport,
    ) -> Result<String, crate::domain::gitlab::GitlabError>;
    /// `POST /projects/:id/statuses/:sha`.
    async fn set_status(
        &self,
        project_id: u64,
        sha: &str,
        state: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), crate::domain::gitlab::GitlabError>;
}

/// Whose report: one target (a merge request or a branch) of one project of an integration.
#[derive(Clone, Copy, Debug)]
pub struct ReportKey<'a> {
    /// Owning team.
    pub team: &'a TeamId,
    /// Integration.
    pub id: &'a IntegrationId,
    /// GitLab project id.
    pub project_id: u64,
    /// `mr:<iid>` or `ref:<branch>`.
    pub target_key: &'a str,
}

/// What the report keeps between runs, and the integration changes it makes.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Takes the report lease of `key` for `holder` until `until_ms` and returns its state;
    /// `None` while another holder's lease runs.
    async fn lease_report(
        &self,
        key: &ReportKey<'_>,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<crate::domain::report::ReportState>, PortError>;
    /// Saves the state and ends the lease, if `holder` still holds it.
    async fn save_report(
        &self,
        key: &ReportKey<'_>,
        holder: &str,
        state: &crate::domain::report::ReportState,
    ) -> Result<(), PortError>;
    /// Counts one note against the integration's budget for the minute `minute` (Unix minutes);
    /// `false` when `limit` notes were already written in it.
    async fn take_note_budget(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        minute: i64,
        limit: u32,
    ) -> Result<bool, PortError>;
    /// Turns `capability` (`comment`, `open_merge_requests`) off on the integration and adds
    /// `warning`, once.
    async fn downgrade(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        capability: &str,
        warning: &crate::domain::integration::Warning,
        now: OffsetDateTime,
    ) -> Result<(), PortError>;
}

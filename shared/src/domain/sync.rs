//! Sync runs: what one pass over an integration's projects did, as shown by the sync status
//! route and kept with the integration.

use serde::{Deserialize, Serialize};

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Listing and writing.
    Running,
    /// Every project was listed and reconciled.
    Succeeded,
    /// Stopped with an error (see `error`).
    Failed,
}

/// One sync run's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// Id of the run.
    pub sync_id: String,
    /// State.
    pub state: Option<RunState>,
    /// Why it ran (`connected`, `scheduled`, ...).
    pub reason: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once finished.
    pub finished_at: Option<String>,
    /// Projects listed.
    pub seen: u64,
    /// New projects written.
    pub added: u64,
    /// Changed projects written.
    pub updated: u64,
    /// Projects marked removed.
    pub removed: u64,
    /// Projects listed without change.
    pub unchanged: u64,
    /// Listed projects skipped as invalid (unsafe path and the like).
    pub skipped: u64,
    /// GitLab requests.
    pub requests: u64,
    /// Retries after 429.
    pub rate_limited: u64,
    /// DynamoDB write calls.
    pub write_calls: u64,
    /// Stable error code when failed.
    pub error: Option<String>,
    /// One sentence for a person when failed.
    pub error_message: Option<String>,
}

/// Current and last run of an integration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The run in progress, if any.
    pub current: Option<SyncRun>,
    /// The last finished run.
    pub last: Option<SyncRun>,
}

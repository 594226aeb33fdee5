//! Data of a project listing: what GitLab lists, the limits of one listing, its counters and
//! why it can stop early. The HTTP side lives in `adapters::gitlab::listing`.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::gitlab::GitlabError;

/// A project as `GET /projects?simple=true` lists it (only the fields the connector reads;
/// optional ones are absent from the simple representation on some versions).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ListedProject {
    /// Numeric id.
    pub id: u64,
    /// `group/project`.
    pub path_with_namespace: String,
    /// Null for an empty repository.
    #[serde(default)]
    pub default_branch: Option<String>,
    /// Present in the full representation.
    #[serde(default)]
    pub visibility: Option<String>,
    /// Present in the full representation.
    #[serde(default)]
    pub archived: Option<bool>,
    /// Present in the full representation.
    #[serde(default)]
    pub empty_repo: Option<bool>,
    /// RFC 3339.
    #[serde(default)]
    pub last_activity_at: Option<String>,
}

/// Limits and pacing of one listing.
#[derive(Clone, Debug)]
pub struct ListingSettings {
    /// Items per page (GitLab's maximum is 100).
    pub per_page: u32,
    /// Most id ranges listed at once.
    pub max_concurrency: usize,
    /// Most id ranges the id space is split into.
    pub max_ranges: usize,
    /// Cap on pages over the whole listing.
    pub max_pages: u64,
    /// Cap on projects over the whole listing.
    pub max_items: u64,
    /// Client-side budget: requests per window (GitLab.com: 2,000 `GET /projects` per 10 min).
    pub budget_requests: u32,
    /// Budget window.
    pub budget_window: Duration,
    /// Attempts per request on 429, 5xx and transport errors.
    pub max_attempts: u32,
    /// First backoff step (doubles, with jitter).
    pub base_backoff: Duration,
    /// Longest single wait.
    pub max_backoff: Duration,
    /// Stop (with [`ListingError::Deadline`]) rather than wait past this instant.
    pub deadline: Option<Instant>,
    /// Extra filter appended to every listing query (for example `archived=true`).
    pub extra_query: String,
    /// Continue these ranges instead of starting from the beginning (a checkpointed run).
    pub resume: Option<Vec<IdRange>>,
}

impl ListingStats {
    /// Adds another listing's counters (the filtered listings of a sync, say).
    pub fn add(&mut self, other: &ListingStats) {
        self.requests += other.requests;
        self.pages += other.pages;
        self.items += other.items;
        self.rate_limited += other.rate_limited;
        self.retried += other.retried;
        self.ranges += other.ranges;
    }
}

/// Ids after `.0` (exclusive) and, when set, before `.1` (exclusive): a piece of the id space
/// still to list.
pub type IdRange = (u64, Option<u64>);

impl Default for ListingSettings {
    fn default() -> Self {
        Self {
            per_page: 100,
            max_concurrency: 8,
            max_ranges: 16,
            max_pages: 5_000,
            max_items: 500_000,
            budget_requests: 2_000,
            budget_window: Duration::from_secs(600),
            max_attempts: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            deadline: None,
            extra_query: String::new(),
            resume: None,
        }
    }
}

/// Counters of one listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListingStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Pages received.
    pub pages: u64,
    /// Projects received.
    pub items: u64,
    /// Retries after 429.
    pub rate_limited: u64,
    /// Retries after 5xx or transport errors.
    pub retried: u64,
    /// Id ranges listed.
    pub ranges: u64,
}

/// What a listing sends its consumer, in order: the plan first, then pages. The consumer can
/// tell from them where every range stands after the pages it has handled, which is what a
/// checkpoint must record (never a position ahead of what was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// The ranges still to list, by slot; replaces any earlier plan (the first page of a fresh
    /// listing is slot 0 of `[(0, None)]`, then the rest of the id space is split).
    Plan(Vec<IdRange>),
    /// One page of range `slot`; `next` is where that range continues (`None`: it is done).
    Page {
        /// Index into the current plan.
        slot: usize,
        /// The page's projects (possibly none).
        projects: Vec<ListedProject>,
        /// The range from the next cursor on.
        next: Option<IdRange>,
    },
}

/// How a listing ended, with its counters either way (an interrupted listing still spent
/// requests).
#[derive(Debug)]
pub struct ListingReport {
    /// Counters.
    pub stats: ListingStats,
    /// `Ok` when every range was listed to its end.
    pub result: Result<(), ListingError>,
}

/// Why a listing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// GitLab (or the network) failed in a way retries did not fix, or the token died.
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    /// A cap was reached: the instance lists more than the connector will read in one sync.
    #[error("listing cap reached: {0}")]
    Cap(&'static str),
    /// The deadline came first; the pages sent so far say what is still to list.
    #[error("deadline reached")]
    Deadline,
    /// The consumer stopped receiving pages.
    #[error("page consumer stopped")]
    Closed,
}

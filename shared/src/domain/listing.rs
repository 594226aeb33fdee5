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
        self.estimated_items = self.estimated_items.max(other.estimated_items);
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
    /// Projects the instance is estimated to list, from the first page's density over the id
    /// space (0: no estimate; small instances are listed in one range without one).
    pub estimated_items: u64,
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
        /// The listing's counters when the page was sent (for progress shown while it runs).
        stats: ListingStats,
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

/// The highest id GitLab can hand out: ids are PostgreSQL `bigint` (`i64`), always positive.
pub const MAX_GITLAB_ID: u64 = i64::MAX as u64;

/// Whether `id` is one GitLab can produce (`1..=i64::MAX`).
pub fn is_gitlab_id(id: u64) -> bool {
    (1..=MAX_GITLAB_ID).contains(&id)
}

/// Checks one page of a keyset listing against the request that produced it: at most
/// `per_page` projects, every id one GitLab can produce and inside `(id_after, id_before)`.
pub fn check_page(ids: &[u64], id_after: u64, id_before: Option<u64>, per_page: u32) -> Result<(), GitlabError> {
    if ids.len() > per_page as usize {
        return Err(GitlabError::NotGitlab { why: "page larger than per_page" });
    }
    if ids.iter().any(|&id| !is_gitlab_id(id)) {
        return Err(GitlabError::NotGitlab { why: "project id outside GitLab's id range" });
    }
    if ids.iter().any(|&id| id <= id_after || id_before.is_some_and(|b| id >= b)) {
        return Err(GitlabError::NotGitlab { why: "project outside the requested range" });
    }
    Ok(())
}

/// Splits what is left of the id space after the first page into ranges to list concurrently.
///
/// `start` is where the first page began, `cursor` where it ended (the next page's `id_after`),
/// `first_len` how many projects it held, and `top` the id the highest-id probe returned (`None`:
/// the probe came back empty). The first page's density estimates how many pages the rest holds;
/// a quarter of that, clamped to `1..=max_ranges`, is the number of ranges. The last range is
/// open-ended so projects created during the sync are included.
///
/// Ids GitLab cannot produce are refused; arithmetic is checked and the result has at most
/// `max_ranges + 1` ranges whatever the inputs.
pub fn split_ranges(
    start: u64,
    cursor: u64,
    first_len: u64,
    top: Option<u64>,
    per_page: u32,
    max_ranges: usize,
) -> Result<Vec<IdRange>, GitlabError> {
    if !is_gitlab_id(cursor) || cursor <= start {
        return Err(GitlabError::NotGitlab { why: "cursor outside GitLab's id range" });
    }
    if top.is_some_and(|t| !is_gitlab_id(t)) {
        return Err(GitlabError::NotGitlab { why: "highest project id outside GitLab's id range" });
    }
    let max_id = top.unwrap_or(cursor).max(cursor);
    let remaining = max_id - cursor;
    let per_id = first_len.max(1) as f64 / (cursor - start) as f64;
    let estimated_pages = (remaining as f64 * per_id / f64::from(per_page.max(1))).ceil();
    // `as` saturates for floats: a huge estimate becomes u64::MAX and is clamped below.
    let n = ((estimated_pages as u64) / 4).clamp(1, max_ranges.max(1) as u64);
    let span = remaining.div_ceil(n).max(1);
    let mut ranges = Vec::with_capacity(n as usize + 1);
    let mut lo = cursor;
    // Each step moves `lo` up by `span`, so `n` steps reach `max_id`; the bound is a backstop.
    for _ in 0..=n {
        let hi = lo.saturating_add(span).min(max_id);
        if hi >= max_id {
            ranges.push((lo, None));
            return Ok(ranges);
        }
        ranges.push((lo, Some(hi + 1)));
        lo = hi;
    }
    Err(GitlabError::NotGitlab { why: "id space could not be split" })
}

/// Projects an instance is estimated to hold: the first page's density (`first_len` projects
/// in `(start, cursor]`) over the id space up to `top`.
pub fn estimate_items(start: u64, cursor: u64, first_len: u64, top: Option<u64>) -> u64 {
    let Some(top) = top.filter(|t| *t > cursor && cursor > start) else { return first_len };
    let density = first_len as f64 / (cursor - start) as f64;
    first_len.saturating_add(((top - cursor) as f64 * density).round() as u64)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_probe_near_the_top_of_u64_is_refused_not_looped_over() {
        for top in [u64::MAX, u64::MAX - 1, MAX_GITLAB_ID + 1] {
            let err = split_ranges(0, 100, 100, Some(top), 100, 16).expect_err("refused");
            assert!(matches!(err, GitlabError::NotGitlab { .. }), "{top}: {err:?}");
        }
        // The highest id GitLab can produce is fine and splits into at most 16 + 1 ranges.
        let ranges = split_ranges(0, 100, 100, Some(MAX_GITLAB_ID), 100, 16).expect("valid");
        assert!(ranges.len() <= 17, "{}", ranges.len());
        assert_eq!(ranges.last(), Some(&(ranges.last().expect("one").0, None)));
    }

    #[test]
    fn a_small_instance_splits_evenly_and_ends_open() {
        let ranges = split_ranges(0, 100, 100, Some(10_100), 100, 16).expect("valid");
        assert_eq!(ranges.len(), 16);
        assert_eq!(ranges[0], (100, Some(726)));
        assert_eq!(ranges.last(), Some(&(9_475, None)));
        assert_eq!(split_ranges(0, 100, 100, None, 100, 16).expect("valid"), vec![(100, None)]);
    }

    #[test]
    fn pages_with_ids_gitlab_cannot_produce_are_refused() {
        assert!(check_page(&[1, 2, 3], 0, None, 100).is_ok());
        assert!(check_page(&[1, MAX_GITLAB_ID], 0, None, 100).is_ok());
        for ids in [vec![0], vec![5, MAX_GITLAB_ID + 1], vec![u64::MAX]] {
            assert!(check_page(&ids, 0, None, 100).is_err(), "{ids:?}");
        }
        assert!(check_page(&[10], 10, None, 100).is_err(), "not after the cursor");
        assert!(check_page(&[20], 10, Some(20), 100).is_err(), "not before the bound");
        assert!(check_page(&[11, 12, 13], 10, None, 2).is_err(), "more than per_page");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the first page and the probe say, the plan is bounded, contiguous, inside
        /// GitLab's id range and open at the end, or the answer is refused.
        #[test]
        fn the_split_is_bounded_for_any_probe(
            start in prop_oneof![Just(0u64), any::<u64>()],
            cursor in prop_oneof![1u64..10_000, any::<u64>(), Just(MAX_GITLAB_ID)],
            first_len in 0u64..=200,
            top in proptest::option::of(prop_oneof![any::<u64>(), 1u64..1_000_000, Just(MAX_GITLAB_ID), Just(u64::MAX)]),
            per_page in 0u32..=200,
            max_ranges in 0usize..=64,
        ) {
            match split_ranges(start, cursor, first_len, top, per_page, max_ranges) {
                Err(GitlabError::NotGitlab { .. }) => {
                    prop_assert!(
                        !is_gitlab_id(cursor) || cursor <= start || top.is_some_and(|t| !is_gitlab_id(t))
                    );
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                Ok(ranges) => {
                    prop_assert!(!ranges.is_empty() && ranges.len() <= max_ranges.max(1) + 1);
                    prop_assert_eq!(ranges[0].0, cursor);
                    prop_assert_eq!(ranges.last().map(|r| r.1), Some(None));
                    for pair in ranges.windows(2) {
                        let (lo, hi) = pair[0];
                        let hi = hi.expect("only the last range is open");
                        prop_assert!(lo < hi && hi <= MAX_GITLAB_ID + 1);
                        prop_assert_eq!(pair[1].0 + 1, hi, "ranges meet without gaps");
                    }
                }
            }
        }

        /// A page passes only when every id is GitLab's and inside the requested range.
        #[test]
        fn pages_pass_only_with_ids_inside_the_range(
            ids in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..1_000], 0..8),
            id_after in prop_oneof![0u64..500, any::<u64>()],
            id_before in proptest::option::of(prop_oneof![0u64..1_000, any::<u64>()]),
        ) {
            let ok = check_page(&ids, id_after, id_before, 100).is_ok();
            let expected = ids
                .iter()
                .all(|&id| is_gitlab_id(id) && id > id_after && id_before.is_none_or(|b| id < b));
            prop_assert_eq!(ok, expected);
        }
    }
}

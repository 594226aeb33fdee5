//! Listing every project a token can reach, fast and within GitLab's rules: keyset pagination
//! (`order_by=id`), the id space split into ranges listed concurrently with an adaptive bound,
//! a client-side request budget, `RateLimit-*` / `Retry-After` honoured, jittered backoff on
//! 429 and 5xx, and hard caps so a hostile instance cannot keep a sync busy forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::time::Instant;

use super::GitlabClient;
use super::paging::{RateInfo, next_project_cursor};
use crate::domain::gitlab::GitlabError;
pub use crate::domain::listing::{
    IdRange, Listed, ListedProject, ListingError, ListingReport, ListingSettings, ListingStats,
};
use crate::domain::listing::{check_page, estimate_items, split_ranges};

/// Client-side request budget plus GitLab's own signals: a token bucket refilled over the
/// window, slowed when `RateLimit-Remaining` runs low, paused after a 429.
struct Pacer {
    state: Mutex<PacerState>,
    capacity: f64,
    refill_per_sec: f64,
}

struct PacerState {
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
    spacing: Duration,
    next_slot: Instant,
}

impl Pacer {
    fn new(settings: &ListingSettings) -> Self {
        let capacity = f64::from(settings.budget_requests.max(1));
        let now = Instant::now();
        Self {
            state: Mutex::new(PacerState {
                tokens: capacity,
                at: now,
                paused_until: None,
                spacing: Duration::ZERO,
                next_slot: now,
            }),
            capacity,
            refill_per_sec: capacity / settings.budget_window.as_secs_f64().max(1.0),
        }
    }

    /// Waits for permission to send one request.
    async fn acquire(&self, deadline: Option<Instant>) -> Result<(), ListingError> {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let elapsed = now.duration_since(s.at).as_secs_f64();
                s.tokens = (s.tokens + elapsed * self.refill_per_sec).min(self.capacity);
                s.at = now;
                let mut until = now;
                if let Some(p) = s.paused_until {
                    until = until.max(p);
                }
                until = until.max(s.next_slot);
                if s.tokens < 1.0 {
                    until = until.max(now + Duration::from_secs_f64((1.0 - s.tokens) / self.refill_per_sec));
                }
                if until <= now {
                    s.tokens -= 1.0;
                    s.next_slot = now + s.spacing;
                    return Ok(());
                }
                until - now
            };
            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                return Err(ListingError::Deadline);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Slows down before GitLab's limit: below 10 % remaining, spread the rest evenly until the
    /// window resets.
    async fn observe(&self, info: RateInfo) {
        let (Some(limit), Some(remaining)) = (info.limit, info.remaining) else { return };
        let mut s = self.state.lock().await;
        if remaining.saturating_mul(10) <= limit {
            let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
            let secs_left = info.reset_at.map(|r| (r - now_unix).max(1)).unwrap_or(60) as f64;
            s.spacing = Duration::from_secs_f64(secs_left / (remaining.max(1) as f64));
        } else {
            s.spacing = Duration::ZERO;
        }
    }

    async fn pause(&self, wait: Duration) {
        let mut s = self.state.lock().await;
        let until = Instant::now() + wait;
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }
}

/// Shared by the range tasks.
struct Run {
    client: Arc<GitlabClient>,
    settings: ListingSettings,
    pacer: Pacer,
    permits: Semaphore,
    /// Permits taken away after 429s, to be given back after a run of successes.
    withheld: AtomicU64,
    successes: AtomicU64,
    requests: AtomicU64,
    pages: AtomicU64,
    items: AtomicU64,
    rate_limited: AtomicU64,
    retried: AtomicU64,
    ranges: AtomicU64,
    estimated_items: AtomicU64,
}

impl Run {
    /// The counters so far.
    fn stats(&self) -> ListingStats {
        ListingStats {
            requests: self.requests.load(Ordering::Relaxed),
            pages: self.pages.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            ranges: self.ranges.load(Ordering::Relaxed),
            estimated_items: self.estimated_items.load(Ordering::Relaxed),
        }
    }

    /// One GET with pacing, retries and backoff.
    async fn get_page(&self, query: &str) -> Result<(Vec<ListedProject>, http::HeaderMap), ListingError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Checked before every request, not only before waits: fast pages must stop too. The
            // first request of a listing always goes out, so every invocation makes progress.
            if self.requests.load(Ordering::Relaxed) > 0 && self.settings.deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(ListingError::Deadline);
            }
            self.pacer.acquire(self.settings.deadline).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = self.client.get_with_headers::<Vec<ListedProject>>(&format!("/projects?{query}")).await;
            let wait = match result {
                Ok((items, headers)) => {
                    self.pacer.observe(RateInfo::from_headers(&headers)).await;
                    self.on_success();
                    return Ok((items, headers));
                }
                Err(GitlabError::RateLimited { retry_after }) if attempt < self.settings.max_attempts => {
                    self.rate_limited.fetch_add(1, Ordering::Relaxed);
                    self.on_rate_limited();
                    // Some 429s carry no headers at all: fall back to exponential backoff.
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt)).min(self.settings.max_backoff);
                    self.pacer.pause(wait).await;
                    wait
                }
                Err(e) if e.is_retryable() && attempt < self.settings.max_attempts => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    self.backoff(attempt)
                }
                Err(e) => return Err(e.into()),
            };
            if self.settings.deadline.is_some_and(|d| Instant::now() + wait > d) {
                return Err(ListingError::Deadline);
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying project page");
            tokio::time::sleep(crate::adapters::backoff::jitter(wait)).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.settings.base_backoff.saturating_mul(1 << attempt.min(10)).min(self.settings.max_backoff)
    }

    /// Halves the concurrency after a 429 (never below one).
    fn on_rate_limited(&self) {
        self.successes.store(0, Ordering::Relaxed);
        let max = self.settings.max_concurrency as u64;
        let withheld = self.withheld.load(Ordering::Relaxed);
        let active = max - withheld;
        let drop = active / 2;
        if drop > 0 {
            let taken = self.permits.forget_permits(drop as usize) as u64;
            self.withheld.fetch_add(taken, Ordering::Relaxed);
        }
    }

    /// Gives one permit back after 20 successes in a row.
    fn on_success(&self) {
        if self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= 20 {
            self.successes.store(0, Ordering::Relaxed);
            if self.withheld.load(Ordering::Relaxed) > 0 {
                self.withheld.fetch_sub(1, Ordering::Relaxed);
                self.permits.add_permits(1);
            }
        }
    }

    fn query(&self, id_after: u64, id_before: Option<u64>) -> String {
        let mut q = format!(
            "membership=true&simple=true&pagination=keyset&order_by=id&sort=asc&per_page={}&id_after={id_after}",
            self.settings.per_page
        );
        if let Some(before) = id_before {
            q.push_str(&format!("&id_before={before}"));
        }
        if !self.settings.extra_query.is_empty() {
            q.push('&');
            q.push_str(&self.settings.extra_query);
        }
        q
    }

    /// GitLab never sends more than `per_page` items, ids it cannot produce, or ids outside the
    /// requested range; such a page is not its answer.
    fn check_page(
        &self,
        projects: &[ListedProject],
        id_after: u64,
        id_before: Option<u64>,
    ) -> Result<(), ListingError> {
        let ids: Vec<u64> = projects.iter().map(|p| p.id).collect();
        Ok(check_page(&ids, id_after, id_before, self.settings.per_page)?)
    }

    fn count_page(&self, n: usize) -> Result<(), ListingError> {
        let pages = self.pages.fetch_add(1, Ordering::Relaxed) + 1;
        let items = self.items.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if pages > self.settings.max_pages {
            return Err(ListingError::Cap("pages"));
        }
        if items > self.settings.max_items {
            return Err(ListingError::Cap("projects"));
        }
        Ok(())
    }

    /// Lists ids in `(id_after, id_before)` page by page; the next page comes only from our
    /// own query plus a validated, advancing cursor.
    async fn list_range(
        &self,
        slot: usize,
        mut id_after: u64,
        id_before: Option<u64>,
        tx: &mpsc::Sender<Listed>,
    ) -> Result<(), ListingError> {
        loop {
            let permit = self.permits.acquire().await.map_err(|_| ListingError::Closed)?;
            let (projects, headers) = self.get_page(&self.query(id_after, id_before)).await?;
            drop(permit);
            self.check_page(&projects, id_after, id_before)?;
            self.count_page(projects.len())?;
            let next = next_project_cursor(&headers, &self.client.instance().url, id_after)?;
            let next = next.map(|cursor| (cursor, id_before));
            tx.send(Listed::Page { slot, projects, next, stats: self.stats() })
                .await
                .map_err(|_| ListingError::Closed)?;
            match next {
                Some((cursor, _)) => id_after = cursor,
                None => return Ok(()),
            }
        }
    }

    /// Lists the ranges concurrently; the first failure stops the others.
    async fn run_ranges(self: &Arc<Self>, ranges: Vec<IdRange>, tx: &mpsc::Sender<Listed>) -> Result<(), ListingError> {
        tx.send(Listed::Plan(ranges.clone())).await.map_err(|_| ListingError::Closed)?;
        self.ranges.fetch_add(ranges.len() as u64, Ordering::Relaxed);
        let mut tasks = tokio::task::JoinSet::new();
        for (slot, (after, before)) in ranges.into_iter().enumerate() {
            let (run, tx) = (Arc::clone(self), tx.clone());
            tasks.spawn(async move { run.list_range(slot, after, before, &tx).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined.unwrap_or(Err(ListingError::Closed)) {
                tasks.abort_all();
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Lists the first page after `start`, then plans the ranges that cover the rest of the id
/// space.
async fn plan_ranges(run: &Arc<Run>, tx: &mpsc::Sender<Listed>, start: u64) -> Result<Vec<IdRange>, ListingError> {
    tx.send(Listed::Plan(vec![(start, None)])).await.map_err(|_| ListingError::Closed)?;
    run.ranges.fetch_add(1, Ordering::Relaxed);
    let (first, headers) = run.get_page(&run.query(start, None)).await?;
    run.check_page(&first, start, None)?;
    run.count_page(first.len())?;
    let next = next_project_cursor(&headers, &run.client.instance().url, start)?;
    let first_len = first.len() as u64;
    tx.send(Listed::Page { slot: 0, projects: first, next: next.map(|c| (c, None)), stats: run.stats() })
        .await
        .map_err(|_| ListingError::Closed)?;
    let Some(cursor) = next else { return Ok(Vec::new()) };
    // The highest id bounds the id space; the first page's density estimates its size.
    let probe = format!(
        "membership=true&simple=true&order_by=id&sort=desc&per_page=1{}{}",
        if run.settings.extra_query.is_empty() { "" } else { "&" },
        run.settings.extra_query
    );
    let (top, _) = run.get_page(&probe).await?;
    if top.len() > 1 {
        return Err(GitlabError::NotGitlab { why: "highest-id probe answered more than one project" }.into());
    }
    let top = top.first().map(|p| p.id);
    let ranges = split_ranges(start, cursor, first_len, top, run.settings.per_page, run.settings.max_ranges)?;
    // Only a fresh listing knows the whole id space's density; a resumed one has no estimate.
    if start == 0 {
        run.estimated_items.store(estimate_items(start, cursor, first_len, top), Ordering::Relaxed);
    }
    Ok(ranges)
}

/// Lists every project, sending the plan and pages to `tx` as they arrive (in no particular
/// order across ranges). One request for small instances; for large ones the first page and the
/// highest id estimate the density and the rest is split into ranges listed concurrently.
pub async fn list_projects(
    client: Arc<GitlabClient>,
    settings: ListingSettings,
    tx: mpsc::Sender<Listed>,
) -> ListingReport {
    let run = Arc::new(Run {
        pacer: Pacer::new(&settings),
        permits: Semaphore::new(settings.max_concurrency.max(1)),
        client,
        settings,
        withheld: AtomicU64::new(0),
        successes: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        pages: AtomicU64::new(0),
        items: AtomicU64::new(0),
        rate_limited: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        ranges: AtomicU64::new(0),
        estimated_items: AtomicU64::new(0),
    });
    let result = async {
        let ranges = match run.settings.resume.clone() {
            // One open-ended range left (a pass stopped before or right after its plan): split
            // it again rather than list the rest of the id space one page at a time.
            Some(ranges) if ranges.len() == 1 && ranges[0].1.is_none() => plan_ranges(&run, &tx, ranges[0].0).await?,
            Some(ranges) => ranges,
            None => plan_ranges(&run, &tx, 0).await?,
        };
        run.run_ranges(ranges, &tx).await
    }
    .await;
    ListingReport { stats: run.stats(), result }
}

//! Hand-written fakes that keep state behind a mutex and expose what was done to them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::domain::gitlab::GitlabError;
use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::integration::{Integration, IntegrationStatus, TokenReport};
use crate::domain::listing::{Listed, ListedProject, ListingError, ListingReport, ListingSettings, ListingStats};
use crate::domain::project::{Project, StoredRef, valid_project_path};
use crate::domain::sync::{QueuedSync, SyncRun, SyncStatus};
use crate::domain::url_policy::{InstanceUrl, UrlReason, UrlRejection};
use crate::domain::webhook::{SigningKey, VulnerabilityChange};
use crate::messages::Message;
use crate::ports::{
    DeliveryRecord, DeliveryStore, GitlabGateway, IntegrationDirectory, IntegrationStore, JobQueue, PortError,
    ProjectPage, ProjectQuery, ProjectStore, ProjectWrite, Recorded, ResolvedInstance, SigningKeyVault, StoredToken,
    SyncStateStore, TokenVault, WebhookStateStore,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

/// Integrations in a map keyed by team and id.
#[derive(Default)]
pub struct InMemoryIntegrationStore {
    items: Mutex<HashMap<(TeamId, IntegrationId), Integration>>,
    counters: Mutex<HashMap<(TeamId, String), u64>>,
    unavailable: Mutex<bool>,
    failing_updates: Mutex<bool>,
}

impl InMemoryIntegrationStore {
    /// Every stored integration.
    pub fn all(&self) -> Vec<Integration> {
        lock(&self.items).values().cloned().collect()
    }

    /// Makes every call fail as if DynamoDB were down.
    pub fn set_unavailable(&self, down: bool) {
        *lock(&self.unavailable) = down;
    }

    /// Makes only `update` fail, as a DynamoDB outage between a read and a write would.
    pub fn set_failing_updates(&self, failing: bool) {
        *lock(&self.failing_updates) = failing;
    }

    fn check(&self) -> Result<(), PortError> {
        if *lock(&self.unavailable) { Err(PortError::unavailable(Injected)) } else { Ok(()) }
    }
}

#[async_trait]
impl IntegrationStore for InMemoryIntegrationStore {
    async fn insert(&self, integration: &Integration) -> Result<(), PortError> {
        self.check()?;
        let key = (integration.team_id.clone(), integration.id.clone());
        let mut items = lock(&self.items);
        if items.contains_key(&key) {
            return Err(PortError::Conflict);
        }
        items.insert(key, integration.clone());
        Ok(())
    }

    async fn get(&self, team: &TeamId, id: &IntegrationId) -> Result<Option<Integration>, PortError> {
        self.check()?;
        Ok(lock(&self.items).get(&(team.clone(), id.clone())).cloned())
    }

    async fn list(&self, team: &TeamId) -> Result<Vec<Integration>, PortError> {
        self.check()?;
        let mut list: Vec<Integration> = lock(&self.items).values().filter(|i| &i.team_id == team).cloned().collect();
        list.sort_by_key(|i| i.created_at);
        Ok(list)
    }

    async fn update(&self, integration: &Integration, expected_updated_at: OffsetDateTime) -> Result<(), PortError> {
        self.check()?;
        if *lock(&self.failing_updates) {
            return Err(PortError::unavailable(Injected));
        }
        let key = (integration.team_id.clone(), integration.id.clone());
        let mut items = lock(&self.items);
        match items.get_mut(&key) {
            Some(slot) if slot.updated_at == expected_updated_at => {
                *slot = integration.clone();
                Ok(())
            }
            Some(_) => Err(PortError::Conflict),
            None => Err(PortError::NotFound),
        }
    }

    async fn delete(&self, team: &TeamId, id: &IntegrationId) -> Result<(), PortError> {
        self.check()?;
        lock(&self.items).remove(&(team.clone(), id.clone()));
        Ok(())
    }

    async fn count_in_window(
        &self,
        team: &TeamId,
        window: &str,
        _expires_at: OffsetDateTime,
    ) -> Result<u64, PortError> {
        self.check()?;
        let mut counters = lock(&self.counters);
        let n = counters.entry((team.clone(), window.to_owned())).or_insert(0);
        *n += 1;
        Ok(*n)
    }
}

/// Secrets with their version history (newest last).
#[derive(Default)]
pub struct InMemoryVault {
    secrets: Mutex<HashMap<String, (TeamId, Vec<StoredToken>)>>,
}

impl InMemoryVault {
    /// The current token of a secret, exposed for assertions.
    pub fn current(&self, secret_ref: &str) -> Option<String> {
        lock(&self.secrets).get(secret_ref).and_then(|(_, v)| v.last()).map(|t| t.token.expose_secret().to_owned())
    }

    /// The previous token of a secret, exposed for assertions.
    pub fn previous(&self, secret_ref: &str) -> Option<String> {
        lock(&self.secrets)
            .get(secret_ref)
            .and_then(|(_, v)| v.len().checked_sub(2).and_then(|i| v.get(i)))
            .map(|t| t.token.expose_secret().to_owned())
    }

    /// Number of secrets held.
    pub fn len(&self) -> usize {
        lock(&self.secrets).len()
    }

    /// True when no secret is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl TokenVault for InMemoryVault {
    async fn create(&self, team: &TeamId, id: &IntegrationId, value: &StoredToken) -> Result<String, PortError> {
        let name = format!("arn:fake:secret:{id}");
        lock(&self.secrets).insert(name.clone(), (team.clone(), vec![value.clone()]));
        Ok(name)
    }

    async fn read(&self, secret_ref: &str) -> Result<StoredToken, PortError> {
        lock(&self.secrets).get(secret_ref).and_then(|(_, v)| v.last().cloned()).ok_or(PortError::NotFound)
    }

    async fn replace(&self, secret_ref: &str, value: &StoredToken) -> Result<(), PortError> {
        match lock(&self.secrets).get_mut(secret_ref) {
            Some((_, versions)) => {
                versions.push(value.clone());
                Ok(())
            }
            None => Err(PortError::NotFound),
        }
    }

    async fn delete(&self, secret_ref: &str) -> Result<(), PortError> {
        lock(&self.secrets).remove(secret_ref);
        Ok(())
    }
}

/// Records sent messages; can be told to fail.
#[derive(Default)]
pub struct RecordingJobQueue {
    sent: Mutex<Vec<Message>>,
    failing: Mutex<bool>,
}

impl RecordingJobQueue {
    /// Messages sent so far.
    pub fn sent_messages(&self) -> Vec<Message> {
        lock(&self.sent).clone()
    }

    /// Makes sends fail.
    pub fn set_failing(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }
}

#[async_trait]
impl JobQueue for RecordingJobQueue {
    async fn send(&self, message: &Message) -> Result<(), PortError> {
        if *lock(&self.failing) {
            return Err(PortError::unavailable(Injected));
        }
        lock(&self.sent).push(message.clone());
        Ok(())
    }
}

/// A GitLab with canned answers per token and configurable DNS outcomes.
#[derive(Default)]
pub struct FakeGitlab {
    reports: Mutex<HashMap<String, Result<TokenReport, GitlabError>>>,
    dns: Mutex<HashMap<String, Result<Vec<IpAddr>, UrlReason>>>,
    inspected: Mutex<Vec<String>>,
    projects: Mutex<Vec<ListedProject>>,
    listing_error: Mutex<Option<GitlabError>>,
    language_calls: Mutex<Vec<u64>>,
    detail_calls: Mutex<Vec<u64>>,
    details_error: Mutex<Option<GitlabError>>,
    listings: Mutex<Vec<(String, Option<Vec<crate::domain::listing::IdRange>>)>>,
}

impl FakeGitlab {
    /// What inspecting `token` answers.
    pub fn answer(&self, token: &str, result: Result<TokenReport, GitlabError>) {
        lock(&self.reports).insert(token.to_owned(), result);
    }

    /// What resolving `host` gives (default: one public documentation-free address).
    pub fn dns(&self, host: &str, result: Result<Vec<IpAddr>, UrlReason>) {
        lock(&self.dns).insert(host.to_owned(), result);
    }

    /// The projects every listing returns, in id order (as the simple entity: without
    /// `archived`, `visibility` and `empty_repo`, which only filters and details reveal).
    pub fn set_projects(&self, projects: Vec<ListedProject>) {
        let mut projects = projects;
        projects.sort_by_key(|p| p.id);
        *lock(&self.projects) = projects;
    }

    /// Makes listings fail after their first page.
    pub fn fail_listing(&self, error: Option<GitlabError>) {
        *lock(&self.listing_error) = error;
    }

    /// Listings started, in order: their filter and the ranges they resumed.
    pub fn listings(&self) -> Vec<(String, Option<Vec<crate::domain::listing::IdRange>>)> {
        lock(&self.listings).clone()
    }

    /// Makes `GET /projects/:id` fail (`None` heals it).
    pub fn fail_details(&self, error: Option<GitlabError>) {
        *lock(&self.details_error) = error;
    }

    /// Project ids looked up with `GET /projects/:id`, in order.
    pub fn detail_calls(&self) -> Vec<u64> {
        lock(&self.detail_calls).clone()
    }

    /// Project ids whose languages were asked for, in order.
    pub fn language_calls(&self) -> Vec<u64> {
        lock(&self.language_calls).clone()
    }

    /// Base URLs inspected, in order.
    pub fn inspected(&self) -> Vec<String> {
        lock(&self.inspected).clone()
    }
}

#[async_trait]
impl GitlabGateway for FakeGitlab {
    async fn resolve(&self, url: &InstanceUrl) -> Result<ResolvedInstance, UrlRejection> {
        let host = url.host_for_resolve();
        let answer = lock(&self.dns).get(&host).cloned().unwrap_or(Ok(vec![IpAddr::V4(Ipv4Addr::new(34, 1, 2, 3))]));
        match answer {
            Ok(addresses) => Ok(ResolvedInstance { url: url.clone(), addresses }),
            Err(reason) => Err(UrlRejection::new(reason)),
        }
    }

    async fn inspect_token(
        &self,
        instance: &ResolvedInstance,
        _ca_certificate: Option<&str>,
        token: &SecretString,
    ) -> Result<TokenReport, GitlabError> {
        lock(&self.inspected).push(instance.url.base_url());
        lock(&self.reports).get(token.expose_secret()).cloned().unwrap_or(Err(GitlabError::Unauthorized))
    }

    async fn list_projects(
        &self,
        _instance: &ResolvedInstance,
        _ca_certificate: Option<&str>,
        _token: &SecretString,
        settings: ListingSettings,
        pages: tokio::sync::mpsc::Sender<Listed>,
    ) -> ListingReport {
        let projects: Vec<ListedProject> = lock(&self.projects)
            .iter()
            .filter(|p| match settings.extra_query.as_str() {
                "" => true,
                "archived=true" => p.archived == Some(true),
                q => q.strip_prefix("visibility=").is_some_and(|v| p.visibility.as_deref() == Some(v)),
            })
            // The simple entity has no `archived`, `visibility` or `empty_repo`.
            .map(|p| ListedProject { archived: None, visibility: None, empty_repo: None, ..p.clone() })
            .collect();
        lock(&self.listings).push((settings.extra_query.clone(), settings.resume.clone()));
        let failure = lock(&self.listing_error).clone();
        let ranges = settings.resume.clone().unwrap_or_else(|| vec![(0, None)]);
        let mut stats = ListingStats { ranges: ranges.len() as u64, ..ListingStats::default() };
        let result = async {
            pages.send(Listed::Plan(ranges.clone())).await.map_err(|_| ListingError::Closed)?;
            for (slot, (after, before)) in ranges.into_iter().enumerate() {
                let in_range: Vec<ListedProject> =
                    projects.iter().filter(|p| p.id > after && before.is_none_or(|b| p.id < b)).cloned().collect();
                let chunks: Vec<&[ListedProject]> = in_range.chunks(settings.per_page.max(1) as usize).collect();
                let count = chunks.len().max(1);
                for n in 0..count {
                    if n > 0
                        && let Some(e) = failure.clone()
                    {
                        return Err(e.into());
                    }
                    let chunk = chunks.get(n).copied().unwrap_or_default();
                    stats.requests += 1;
                    stats.pages += 1;
                    stats.items += chunk.len() as u64;
                    let next = (n + 1 < count).then(|| (chunk.last().map_or(after, |p| p.id), before));
                    pages
                        .send(Listed::Page { slot, projects: chunk.to_vec(), next, stats })
                        .await
                        .map_err(|_| ListingError::Closed)?;
                }
            }
            Ok(())
        }
        .await;
        ListingReport { stats, result }
    }

    async fn project_details(
        &self,
        _instance: &ResolvedInstance,
        _ca_certificate: Option<&str>,
        _token: &SecretString,
        project_id: u64,
    ) -> Result<ListedProject, GitlabError> {
        lock(&self.detail_calls).push(project_id);
        if let Some(e) = lock(&self.details_error).clone() {
            return Err(e);
        }
        lock(&self.projects).iter().find(|p| p.id == project_id).cloned().ok_or(GitlabError::NotFound)
    }

    async fn project_languages(
        &self,
        _instance: &ResolvedInstance,
        _ca_certificate: Option<&str>,
        _token: &SecretString,
        project_id: u64,
    ) -> Result<std::collections::BTreeMap<String, f64>, GitlabError> {
        lock(&self.language_calls).push(project_id);
        Ok(std::collections::BTreeMap::from([("Rust".to_owned(), 90.0), ("Shell".to_owned(), 10.0)]))
    }
}

#[async_trait]
impl IntegrationDirectory for InMemoryIntegrationStore {
    async fn all_integrations(&self) -> Result<Vec<(TeamId, IntegrationId, IntegrationStatus)>, PortError> {
        self.check()?;
        Ok(lock(&self.items).values().map(|i| (i.team_id.clone(), i.id.clone(), i.status)).collect())
    }

    async fn find(&self, id: &IntegrationId) -> Result<Option<Integration>, PortError> {
        self.check()?;
        Ok(lock(&self.items).values().find(|i| &i.id == id).cloned())
    }
}

/// A stored project in the fake: snapshot, flags and the sync that wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeProject {
    /// Last written snapshot.
    pub snapshot: crate::domain::project::ProjectSnapshot,
    /// Tracking flag.
    pub tracked: bool,
    /// Removal time, if removed.
    pub removed_at: Option<String>,
    /// Sync that last wrote it.
    pub sync_id: String,
    /// Languages, once fetched.
    pub languages: Option<std::collections::BTreeMap<String, f64>>,
    /// Fingerprint the last details lookup confirmed.
    pub details_fingerprint: Option<String>,
    /// The managed hook recorded for it.
    pub hook: Option<crate::domain::project::HookRecord>,
}

type IntegrationKey = (TeamId, IntegrationId);

/// Projects, leases and runs in maps, with a count of write calls.
#[derive(Default)]
pub struct InMemoryProjectStore {
    projects: Mutex<HashMap<IntegrationKey, HashMap<u64, FakeProject>>>,
    leases: Mutex<HashMap<IntegrationKey, (String, OffsetDateTime)>>,
    runs: Mutex<HashMap<IntegrationKey, SyncStatus>>,
    /// When a run was last requested through the API (the cooldown).
    requested: Mutex<HashMap<IntegrationKey, OffsetDateTime>>,
    write_calls: Mutex<u64>,
    checkpoints: Mutex<HashMap<IntegrationKey, StoredCheckpoint>>,
    failing_writes_after: Mutex<Option<u64>>,
}

/// A checkpoint and its parts of seen ids.
type StoredCheckpoint = (crate::domain::sync::Checkpoint, Vec<Vec<u64>>);

impl InMemoryProjectStore {
    /// Stored projects of an integration.
    pub fn projects(&self, team: &TeamId, id: &IntegrationId) -> HashMap<u64, FakeProject> {
        lock(&self.projects).get(&(team.clone(), id.clone())).cloned().unwrap_or_default()
    }

    /// Makes project writes fail once this many write calls were made (a back-end outage in
    /// the middle of a sync); `None` heals it.
    pub fn set_failing_writes_after(&self, calls: Option<u64>) {
        *lock(&self.failing_writes_after) = calls;
    }

    /// The stored checkpoint of an integration, with its parts.
    pub fn checkpoint(&self, team: &TeamId, id: &IntegrationId) -> Option<StoredCheckpoint> {
        lock(&self.checkpoints).get(&(team.clone(), id.clone())).cloned()
    }

    /// Write calls so far.
    pub fn write_calls(&self) -> u64 {
        *lock(&self.write_calls)
    }

    /// Sets a project's tracking flag.
    pub fn set_tracked(&self, team: &TeamId, id: &IntegrationId, project: u64, tracked: bool) {
        if let Some(p) = lock(&self.projects).get_mut(&(team.clone(), id.clone())).and_then(|m| m.get_mut(&project)) {
            p.tracked = tracked;
        }
    }
}

#[async_trait]
impl ProjectStore for InMemoryProjectStore {
    async fn stored_refs(&self, team: &TeamId, id: &IntegrationId) -> Result<HashMap<u64, StoredRef>, PortError> {
        Ok(self
            .projects(team, id)
            .into_iter()
            .map(|(k, p)| {
                (
                    k,
                    StoredRef {
                        fingerprint: p.snapshot.fingerprint(),
                        removed: p.removed_at.is_some(),
                        tracked: p.tracked,
                        details_fingerprint: p.details_fingerprint.clone(),
                        empty_repo: p.snapshot.empty_repo,
                    },
                )
            })
            .collect())
    }

    async fn write_projects(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        sync_id: &str,
        writes: &[ProjectWrite],
    ) -> Result<u64, PortError> {
        if lock(&self.failing_writes_after).is_some_and(|n| self.write_calls() >= n) {
            return Err(PortError::unavailable(std::io::Error::other("writes are failing")));
        }
        let mut all = lock(&self.projects);
        let map = all.entry((team.clone(), id.clone())).or_default();
        let mut calls = 0;
        for w in writes {
            calls += 1;
            match w {
                ProjectWrite::Add(s) | ProjectWrite::Update(s) => {
                    assert!(valid_project_path(&s.path_with_namespace), "unvalidated snapshot written");
                    let (tracked, languages, details_fingerprint, hook) = map
                        .get(&s.id)
                        .map(|p| (p.tracked, p.languages.clone(), p.details_fingerprint.clone(), p.hook.clone()))
                        .unwrap_or_default();
                    map.insert(
                        s.id,
                        FakeProject {
                            snapshot: s.clone(),
                            tracked,
                            removed_at: None,
                            sync_id: sync_id.to_owned(),
                            languages,
                            details_fingerprint,
                            hook,
                        },
                    );
                }
                ProjectWrite::Remove(pid, at) => {
                    if let Some(p) = map.get_mut(pid) {
                        p.removed_at = Some(at.clone());
                    }
                }
            }
        }
        *lock(&self.write_calls) += calls;
        Ok(calls)
    }

    async fn set_details(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        languages: &std::collections::BTreeMap<String, f64>,
        fingerprint: &str,
    ) -> Result<(), PortError> {
        match lock(&self.projects).get_mut(&(team.clone(), id.clone())).and_then(|m| m.get_mut(&project_id)) {
            Some(p) => {
                p.languages = Some(languages.clone());
                p.details_fingerprint = Some(fingerprint.to_owned());
                *lock(&self.write_calls) += 1;
                Ok(())
            }
            None => Err(PortError::NotFound),
        }
    }

    async fn list_projects(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        query: &ProjectQuery,
    ) -> Result<ProjectPage, PortError> {
        let mut all: Vec<FakeProject> = self.projects(team, id).into_values().collect();
        all.sort_by_key(|p| p.snapshot.id);
        let limit = query.limit.clamp(1, 100) as usize;
        let items: Vec<Project> = all
            .into_iter()
            .filter(|p| p.removed_at.is_none())
            .filter(|p| query.after.is_none_or(|a| p.snapshot.id > a))
            .filter(|p| query.tracked.is_none_or(|t| p.tracked == t))
            .filter(|p| {
                query
                    .search
                    .as_deref()
                    .is_none_or(|q| p.snapshot.path_with_namespace.to_lowercase().contains(&q.to_lowercase()))
            })
            .take(limit)
            .map(|p| Project {
                fingerprint: p.snapshot.fingerprint(),
                snapshot: p.snapshot,
                tracked: p.tracked,
                languages: p.languages,
                removed_at: None,
                sync_id: p.sync_id,
                webhook: crate::domain::project::ProjectWebhook { last_delivery_at: None, hook: p.hook },
            })
            .collect();
        let next_after = (items.len() == limit).then(|| items.last().map(|p| p.snapshot.id)).flatten();
        Ok(ProjectPage { items, next_after })
    }

    async fn hook_targets(
        &self,
        team: &TeamId,
        id: &IntegrationId,
    ) -> Result<Vec<crate::domain::project::HookTarget>, PortError> {
        let all = lock(&self.projects);
        let mut out: Vec<crate::domain::project::HookTarget> = all
            .get(&(team.clone(), id.clone()))
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(pid, p)| {
                let wants_hook = p.tracked && p.removed_at.is_none();
                let hook_id = p.hook.as_ref().and_then(|h| h.hook_id);
                (wants_hook || hook_id.is_some()).then_some(crate::domain::project::HookTarget {
                    project_id: *pid,
                    wants_hook,
                    hook_id,
                })
            })
            .collect();
        out.sort_by_key(|t| t.project_id);
        Ok(out)
    }

    async fn set_hook(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        hook: Option<&crate::domain::project::HookRecord>,
    ) -> Result<(), PortError> {
        if let Some(p) = lock(&self.projects).get_mut(&(team.clone(), id.clone())).and_then(|m| m.get_mut(&project_id))
        {
            p.hook = hook.cloned();
        }
        Ok(())
    }

    async fn set_tracking(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        track: &[u64],
        untrack: &[u64],
        max_tracked: Option<u64>,
    ) -> Result<crate::ports::TrackingResult, PortError> {
        use crate::ports::TrackingResult;
        let mut all = lock(&self.projects);
        let map = all.entry((team.clone(), id.clone())).or_default();
        let mut unknown: Vec<u64> = track
            .iter()
            .chain(untrack.iter())
            .copied()
            .filter(|p| map.get(p).is_none_or(|x| x.removed_at.is_some()))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            return Ok(TrackingResult::Unknown(unknown));
        }
        let tracked_after = map
            .iter()
            .filter(|(p, x)| x.removed_at.is_none() && !untrack.contains(p) && (x.tracked || track.contains(p)))
            .count() as u64;
        if let Some(max) = max_tracked.filter(|max| tracked_after > *max) {
            return Ok(TrackingResult::OverLimit { would_track: tracked_after, max });
        }
        for (ids, flag) in [(track, true), (untrack, false)] {
            for p in ids {
                if let Some(x) = map.get_mut(p) {
                    x.tracked = flag;
                }
            }
        }
        Ok(TrackingResult::Done)
    }
}

#[async_trait]
impl SyncStateStore for InMemoryProjectStore {
    async fn acquire_lease(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        holder: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, PortError> {
        let mut leases = lock(&self.leases);
        let key = (team.clone(), id.clone());
        match leases.get(&key) {
            Some((h, exp)) if h != holder && *exp > now => Ok(false),
            _ => {
                leases.insert(key, (holder.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, team: &TeamId, id: &IntegrationId, holder: &str) -> Result<(), PortError> {
        let mut leases = lock(&self.leases);
        let key = (team.clone(), id.clone());
        if leases.get(&key).is_some_and(|(h, _)| h == holder) {
            leases.remove(&key);
        }
        Ok(())
    }

    async fn save_run(&self, team: &TeamId, id: &IntegrationId, run: &SyncRun) -> Result<(), PortError> {
        let mut runs = lock(&self.runs);
        let status = runs.entry((team.clone(), id.clone())).or_default();
        if run.finished_at.is_some() {
            status.last = Some(run.clone());
            if status.current.as_ref().is_some_and(|c| c.sync_id == run.sync_id) {
                status.current = None;
            }
        } else {
            status.current = Some(run.clone());
            status.queued = None;
        }
        Ok(())
    }

    async fn sync_status(&self, team: &TeamId, id: &IntegrationId) -> Result<SyncStatus, PortError> {
        let key = (team.clone(), id.clone());
        let mut status = lock(&self.runs).get(&key).cloned().unwrap_or_default();
        status.lease_until = lock(&self.leases).get(&key).map(|(_, until)| until.unix_timestamp());
        status.last_requested_at = lock(&self.requested).get(&key).map(|at| at.unix_timestamp());
        Ok(status)
    }

    async fn queue_request(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        queued: &QueuedSync,
        now: OffsetDateTime,
        cooldown: Option<std::time::Duration>,
    ) -> Result<bool, PortError> {
        let key = (team.clone(), id.clone());
        if let Some(cooldown) = cooldown {
            let mut requested = lock(&self.requested);
            if requested.get(&key).is_some_and(|at| now - *at < cooldown) {
                return Ok(false);
            }
            requested.insert(key.clone(), now);
        }
        lock(&self.runs).entry(key).or_default().queued = Some(queued.clone());
        Ok(true)
    }

    async fn clear_queued(&self, team: &TeamId, id: &IntegrationId, queued: &QueuedSync) -> Result<(), PortError> {
        let key = (team.clone(), id.clone());
        let mut runs = lock(&self.runs);
        if let Some(status) = runs.get_mut(&key).filter(|s| s.queued.as_ref() == Some(queued)) {
            status.queued = None;
            lock(&self.requested).remove(&key);
        }
        Ok(())
    }
}

#[async_trait]
impl crate::ports::CheckpointStore for InMemoryProjectStore {
    async fn save_checkpoint(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        checkpoint: &crate::domain::sync::Checkpoint,
    ) -> Result<u32, PortError> {
        let mut all = lock(&self.checkpoints);
        let key = (team.clone(), id.clone());
        let mut parts = all.remove(&key).map(|(_, parts)| parts).unwrap_or_default();
        parts.truncate(checkpoint.parts as usize);
        if !checkpoint.seen.is_empty() {
            parts.push(checkpoint.seen.clone());
        }
        let stored =
            crate::domain::sync::Checkpoint { parts: parts.len() as u32, seen: Vec::new(), ..checkpoint.clone() };
        let n = stored.parts;
        all.insert(key, (stored, parts));
        Ok(n)
    }

    async fn load_checkpoint(
        &self,
        team: &TeamId,
        id: &IntegrationId,
    ) -> Result<Option<crate::domain::sync::Checkpoint>, PortError> {
        Ok(lock(&self.checkpoints)
            .get(&(team.clone(), id.clone()))
            .map(|(cp, parts)| crate::domain::sync::Checkpoint { seen: parts.concat(), ..cp.clone() }))
    }

    async fn clear_checkpoint(&self, team: &TeamId, id: &IntegrationId) -> Result<(), PortError> {
        lock(&self.checkpoints).remove(&(team.clone(), id.clone()));
        Ok(())
    }
}

/// Delivery records, tracked projects, vulnerability states and status changes of the webhook.
#[derive(Default)]
pub struct InMemoryWebhookStore {
    deliveries: Mutex<HashMap<(IntegrationId, String), (DeliveryRecord, bool)>>,
    tracked: Mutex<HashMap<(IntegrationId, u64), bool>>,
    expiring: Mutex<Vec<IntegrationId>>,
    vulnerabilities: Mutex<Vec<VulnerabilityChange>>,
    seen: Mutex<Vec<(IntegrationId, u64)>>,
    unavailable: Mutex<bool>,
    failing_records: Mutex<u32>,
    calls: Mutex<u64>,
}

impl InMemoryWebhookStore {
    /// Makes the next `n` delivery records fail as a timed-out write would (nothing stored).
    pub fn fail_records(&self, n: u32) {
        *lock(&self.failing_records) = n;
    }

    /// Marks a project tracked (or not) under an integration.
    pub fn set_tracked(&self, id: &IntegrationId, project_id: u64, tracked: bool) {
        lock(&self.tracked).insert((id.clone(), project_id), tracked);
    }

    /// Makes every call fail as if DynamoDB were down.
    pub fn set_unavailable(&self, down: bool) {
        *lock(&self.unavailable) = down;
    }

    /// Recorded deliveries with their unsent flag.
    pub fn deliveries(&self) -> Vec<(DeliveryRecord, bool)> {
        lock(&self.deliveries).values().cloned().collect()
    }

    /// Integrations set to `token_expiring`.
    pub fn expiring(&self) -> Vec<IntegrationId> {
        lock(&self.expiring).clone()
    }

    /// Recorded vulnerability states.
    pub fn vulnerabilities(&self) -> Vec<VulnerabilityChange> {
        lock(&self.vulnerabilities).clone()
    }

    /// Deliveries recorded as seen, per integration and project.
    pub fn seen(&self) -> Vec<(IntegrationId, u64)> {
        lock(&self.seen).clone()
    }

    /// Calls made so far (each one a network round trip in the real adapter).
    pub fn calls(&self) -> u64 {
        *lock(&self.calls)
    }

    fn check(&self) -> Result<(), PortError> {
        *lock(&self.calls) += 1;
        if *lock(&self.unavailable) { Err(PortError::unavailable(Injected)) } else { Ok(()) }
    }
}

#[async_trait]
impl DeliveryStore for InMemoryWebhookStore {
    async fn record(&self, delivery: &DeliveryRecord, _expires_at: OffsetDateTime) -> Result<Recorded, PortError> {
        self.check()?;
        {
            let mut failing = lock(&self.failing_records);
            if *failing > 0 {
                *failing -= 1;
                return Err(PortError::unavailable(Injected));
            }
        }
        let mut all = lock(&self.deliveries);
        let key = (delivery.integration_id.clone(), delivery.key.clone());
        if let Some((existing, _)) = all.get(&key) {
            return Ok(if existing.attempt == delivery.attempt { Recorded::New } else { Recorded::Duplicate });
        }
        all.insert(key, (delivery.clone(), false));
        Ok(Recorded::New)
    }

    async fn mark_unsent(&self, delivery: &DeliveryRecord) -> Result<(), PortError> {
        self.check()?;
        if let Some(slot) = lock(&self.deliveries).get_mut(&(delivery.integration_id.clone(), delivery.key.clone())) {
            slot.1 = true;
        }
        Ok(())
    }

    async fn unsent(&self, limit: usize) -> Result<Vec<DeliveryRecord>, PortError> {
        self.check()?;
        let mut list: Vec<DeliveryRecord> =
            lock(&self.deliveries).values().filter(|(_, unsent)| *unsent).map(|(d, _)| d.clone()).collect();
        list.sort_by_key(|d| d.recorded_at);
        list.truncate(limit);
        Ok(list)
    }

    async fn mark_sent(&self, delivery: &DeliveryRecord) -> Result<(), PortError> {
        self.check()?;
        if let Some(slot) = lock(&self.deliveries).get_mut(&(delivery.integration_id.clone(), delivery.key.clone())) {
            slot.1 = false;
        }
        Ok(())
    }
}

#[async_trait]
impl WebhookStateStore for InMemoryWebhookStore {
    async fn is_tracked(&self, _team: &TeamId, id: &IntegrationId, project_id: u64) -> Result<bool, PortError> {
        self.check()?;
        Ok(lock(&self.tracked).get(&(id.clone(), project_id)).copied().unwrap_or(false))
    }

    async fn record_delivery_seen(
        &self,
        _team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        _at: OffsetDateTime,
    ) -> Result<(), PortError> {
        self.check()?;
        lock(&self.seen).push((id.clone(), project_id));
        Ok(())
    }

    async fn set_token_expiring(
        &self,
        _team: &TeamId,
        id: &IntegrationId,
        _now: OffsetDateTime,
    ) -> Result<(), PortError> {
        self.check()?;
        lock(&self.expiring).push(id.clone());
        Ok(())
    }

    async fn record_vulnerability(
        &self,
        _team: &TeamId,
        _id: &IntegrationId,
        change: &VulnerabilityChange,
        _now: OffsetDateTime,
    ) -> Result<(), PortError> {
        self.check()?;
        lock(&self.vulnerabilities).push(change.clone());
        Ok(())
    }
}

/// Signing keys in a map; counts reads.
#[derive(Default)]
pub struct InMemorySigningKeys {
    keys: Mutex<HashMap<String, SigningKey>>,
    reads: Mutex<u64>,
}

impl InMemorySigningKeys {
    /// Reads so far.
    pub fn reads(&self) -> u64 {
        *lock(&self.reads)
    }
}

#[async_trait]
impl SigningKeyVault for InMemorySigningKeys {
    async fn create(&self, _team: &TeamId, id: &IntegrationId, key: &SigningKey) -> Result<String, PortError> {
        let name = format!("signing/{id}");
        lock(&self.keys).insert(name.clone(), key.clone());
        Ok(name)
    }

    async fn read(&self, key_ref: &str) -> Result<Vec<SigningKey>, PortError> {
        *lock(&self.reads) += 1;
        lock(&self.keys).get(key_ref).cloned().map(|k| vec![k]).ok_or(PortError::NotFound)
    }

    async fn delete(&self, key_ref: &str) -> Result<(), PortError> {
        lock(&self.keys).remove(key_ref);
        Ok(())
    }
}

/// Webhook secrets of managed integrations in a map.
#[derive(Default)]
pub struct InMemoryHookSecrets {
    secrets: Mutex<HashMap<String, (String, Option<SigningKey>)>>,
}

impl InMemoryHookSecrets {
    /// The stored secret token.
    pub fn get(&self, secret_ref: &str) -> Option<String> {
        lock(&self.secrets).get(secret_ref).map(|(t, _)| t.clone())
    }
}

#[async_trait]
impl crate::ports::HookSecretVault for InMemoryHookSecrets {
    async fn create(
        &self,
        _team: &TeamId,
        id: &IntegrationId,
        secret: &SecretString,
        signing_key: Option<&SigningKey>,
    ) -> Result<String, PortError> {
        let name = format!("hook-secret/{id}");
        lock(&self.secrets).insert(name.clone(), (secret.expose_secret().to_owned(), signing_key.cloned()));
        Ok(name)
    }

    async fn read(&self, secret_ref: &str) -> Result<crate::ports::HookSecrets, PortError> {
        lock(&self.secrets)
            .get(secret_ref)
            .map(|(t, k)| crate::ports::HookSecrets { token: SecretString::from(t.clone()), signing_key: k.clone() })
            .ok_or(PortError::NotFound)
    }

    async fn rotate(
        &self,
        secret_ref: &str,
        secret: &SecretString,
        _grace_until: OffsetDateTime,
    ) -> Result<Option<SigningKey>, PortError> {
        match lock(&self.secrets).get_mut(secret_ref) {
            Some(s) => {
                s.0 = secret.expose_secret().to_owned();
                let key = s.1.is_some().then(SigningKey::generate);
                if key.is_some() {
                    s.1.clone_from(&key);
                }
                Ok(key)
            }
            None => Err(PortError::NotFound),
        }
    }

    async fn delete(&self, secret_ref: &str) -> Result<(), PortError> {
        lock(&self.secrets).remove(secret_ref);
        Ok(())
    }
}

/// Project hooks in a list (id, project, URL), for handler tests that never call GitLab.
#[derive(Default)]
pub struct FakeHooks {
    hooks: Mutex<Vec<(u64, u64, String)>>,
}

#[async_trait]
impl crate::ports::GitlabHooks for FakeHooks {
    async fn create_hook(
        &self,
        _instance: &ResolvedInstance,
        _ca: Option<&str>,
        _token: &SecretString,
        project_id: u64,
        spec: &crate::domain::hooks::HookSpec,
    ) -> Result<crate::domain::hooks::GitlabHook, GitlabError> {
        let mut hooks = lock(&self.hooks);
        let id = hooks.len() as u64 + 1;
        hooks.push((id, project_id, spec.url.clone()));
        Ok(fake_hook(id, &spec.url))
    }

    async fn get_hook(
        &self,
        _instance: &ResolvedInstance,
        _ca: Option<&str>,
        _token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<crate::domain::hooks::GitlabHook, GitlabError> {
        lock(&self.hooks)
            .iter()
            .find(|(id, p, _)| *id == hook_id && *p == project_id)
            .map(|(id, _, url)| fake_hook(*id, url))
            .ok_or(GitlabError::NotFound)
    }

    async fn update_hook(
        &self,
        _instance: &ResolvedInstance,
        _ca: Option<&str>,
        _token: &SecretString,
        project_id: u64,
        hook_id: u64,
        spec: &crate::domain::hooks::HookSpec,
    ) -> Result<crate::domain::hooks::GitlabHook, GitlabError> {
        let mut hooks = lock(&self.hooks);
        let hook =
            hooks.iter_mut().find(|(id, p, _)| *id == hook_id && *p == project_id).ok_or(GitlabError::NotFound)?;
        hook.2 = spec.url.clone();
        Ok(fake_hook(hook_id, &spec.url))
    }

    async fn delete_hook(
        &self,
        _instance: &ResolvedInstance,
        _ca: Option<&str>,
        _token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<(), GitlabError> {
        lock(&self.hooks).retain(|(id, p, _)| !(*id == hook_id && *p == project_id));
        Ok(())
    }

    async fn test_hook(
        &self,
        _instance: &ResolvedInstance,
        _ca: Option<&str>,
        _token: &SecretString,
        _project_id: u64,
        _hook_id: u64,
    ) -> Result<bool, GitlabError> {
        Ok(true)
    }
}

impl FakeHooks {
    /// (hook id, project id, URL) of every hook.
    pub fn all(&self) -> Vec<(u64, u64, String)> {
        lock(&self.hooks).clone()
    }
}

fn fake_hook(id: u64, url: &str) -> crate::domain::hooks::GitlabHook {
    let mut v = serde_json::json!({ "id": id, "url": url, "alert_status": "executable", "token_present": true });
    for (flag, on) in crate::domain::hooks::MANAGED_EVENTS {
        v[*flag] = serde_json::Value::Bool(*on);
    }
    serde_json::from_value(v).unwrap_or_else(|_| crate::domain::hooks::GitlabHook {
        id,
        url: url.to_owned(),
        alert_status: None,
        disabled_until: None,
        token_present: None,
        signing_token_present: None,
        flags: Default::default(),
    })
}

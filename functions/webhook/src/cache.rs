//! Short-lived, bounded in-memory caches: an integration's webhook settings (including
//! "no such integration", so that guessing ids costs the store nothing) and projects' tracking
//! flags. A stale entry still serves when the store cannot be read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::webhook::Credentials;

/// Entries per map before expired ones are dropped (and, if still full, all of them).
const MAX_ENTRIES: usize = 10_000;

/// What a delivery to one integration is checked against.
#[derive(Debug)]
pub(crate) struct Target {
    /// The integration's team.
    pub team: TeamId,
    /// The integration.
    pub id: IntegrationId,
    /// The GitLab user its token acts as (its own notes are ignored).
    pub own_user_id: u64,
    /// Accepted secrets.
    pub credentials: Credentials,
}

/// A cached answer and whether it is still fresh.
pub(crate) enum Cached<T> {
    Fresh(T),
    Stale(T),
    Missing,
}

struct Map<K, V> {
    entries: HashMap<K, (Instant, V)>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Map<K, V> {
    fn get(&self, key: &K, ttl: Duration) -> Cached<V> {
        match self.entries.get(key) {
            Some((at, v)) if at.elapsed() < ttl => Cached::Fresh(v.clone()),
            Some((_, v)) => Cached::Stale(v.clone()),
            None => Cached::Missing,
        }
    }

    fn put(&mut self, key: K, value: V, ttl: Duration) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (Instant::now(), value));
    }
}

/// The caches of one process.
pub struct Cache {
    ttl: Duration,
    targets: Mutex<Map<String, Option<Arc<Target>>>>,
    tracked: Mutex<Map<(String, u64), bool>>,
    /// When each project's last delivery was recorded by this process.
    seen: Mutex<HashMap<(String, u64), Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    /// Entries stay fresh for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            targets: Mutex::new(Map { entries: HashMap::new() }),
            tracked: Mutex::new(Map { entries: HashMap::new() }),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn target(&self, id: &str) -> Cached<Option<Arc<Target>>> {
        lock(&self.targets).get(&id.to_owned(), self.ttl)
    }

    /// How long ago the integration's settings were read, if they are cached.
    pub(crate) fn target_age(&self, id: &str) -> Option<Duration> {
        lock(&self.targets).entries.get(id).map(|(at, _)| at.elapsed())
    }

    pub(crate) fn put_target(&self, id: &str, target: Option<Arc<Target>>) {
        lock(&self.targets).put(id.to_owned(), target, self.ttl);
    }

    pub(crate) fn tracked(&self, id: &IntegrationId, project_id: u64) -> Option<bool> {
        match lock(&self.tracked).get(&(id.to_string(), project_id), self.ttl) {
            Cached::Fresh(v) => Some(v),
            Cached::Stale(_) | Cached::Missing => None,
        }
    }

    /// Whether a delivery for the project should be recorded now: not more often than `every`
    /// per project and process, so the warm path stays one write and one send.
    pub(crate) fn due_delivery_record(&self, id: &IntegrationId, project_id: u64, every: Duration) -> bool {
        let mut seen = lock(&self.seen);
        let key = (id.to_string(), project_id);
        if seen.get(&key).is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        if seen.len() >= MAX_ENTRIES {
            seen.retain(|_, at| at.elapsed() < every);
        }
        seen.insert(key, Instant::now());
        true
    }

    pub(crate) fn put_tracked(&self, id: &IntegrationId, project_id: u64, tracked: bool) {
        lock(&self.tracked).put((id.to_string(), project_id), tracked, self.ttl);
    }
}

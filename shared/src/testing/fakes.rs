//! Hand-written fakes that keep state behind a mutex and expose what was done to them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::domain::gitlab::GitlabError;
use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::integration::{Integration, TokenReport};
use crate::domain::url_policy::{InstanceUrl, UrlReason, UrlRejection};
use crate::messages::Message;
use crate::ports::{GitlabGateway, IntegrationStore, JobQueue, PortError, ResolvedInstance, StoredToken, TokenVault};

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
}

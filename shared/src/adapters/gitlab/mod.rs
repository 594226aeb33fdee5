//! The GitLab adapter: SSRF-safe resolution and pinning (security policy 8.2-8.3), the hardened
//! client, and the token inspection used by connect, verify and rotate.

mod client;
mod dns;
mod hooks;
pub mod listing;
pub mod paging;
mod report;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

pub use self::client::{GitlabClient, interpret, retry_after};
pub use self::dns::HostResolver;
use self::tls::TlsRoots;
use crate::config::{ConfigError, VarSource, optional, parsed_or};
use crate::domain::address::{Allowlist, check_resolved};
use crate::domain::gitlab::GitlabError;
use crate::domain::integration::{GitlabUser, TokenReport, derive_kind};
use crate::domain::listing::{Listed, ListedProject, ListingReport, ListingSettings, ListingStats};
use crate::domain::url_policy::{InstanceHost, InstanceUrl, UrlPolicy, UrlReason, UrlRejection};
use crate::ports::{GitlabGateway, ResolvedInstance};

/// Limits and network settings for every GitLab call.
#[derive(Clone, Debug)]
pub struct GitlabSettings {
    /// URL rules: operator allowlist and the connector's own hosts.
    pub policy: UrlPolicy,
    /// Explicit DNS server; `None` uses the system resolver.
    pub dns_server: Option<SocketAddr>,
    /// DNS lookup timeout (policy: 5 s).
    pub dns_timeout: Duration,
    /// TCP + TLS connect timeout (policy: 5 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout, covering slow headers and slow bodies (policy: 30 s).
    pub request_timeout: Duration,
    /// Largest successful response body (policy: 8 MiB).
    pub max_body_bytes: usize,
    /// Budget for a whole token inspection (several calls), kept under the function timeout so
    /// a slow instance yields `instance_timeout` rather than a killed invocation.
    pub inspect_deadline: Duration,
    /// User-Agent sent to GitLab.
    pub user_agent: String,
}

impl Default for GitlabSettings {
    fn default() -> Self {
        Self {
            policy: UrlPolicy::default(),
            dns_server: None,
            dns_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
            inspect_deadline: Duration::from_secs(20),
            user_agent: concat!("gitlab-connector/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl GitlabSettings {
    /// Reads `OUTBOUND_ALLOWLIST`, `OWN_HOSTS`, `DNS_SERVER`, `DNS_TIMEOUT_MS`,
    /// `GITLAB_CONNECT_TIMEOUT_MS`, `GITLAB_HTTP_TIMEOUT_MS`, `GITLAB_INSPECT_DEADLINE_MS` and
    /// `GITLAB_MAX_BODY_BYTES`.
    pub fn from_vars(src: &dyn VarSource) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let allowlist = Allowlist::parse(&src.var("OUTBOUND_ALLOWLIST").unwrap_or_default())
            .map_err(|e| ConfigError::Invalid { key: "OUTBOUND_ALLOWLIST", reason: e.to_string() })?;
        let denied_hosts = optional(src, "OWN_HOSTS")
            .map(|v| v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let dns_server = match optional(src, "DNS_SERVER") {
            None => None,
            Some(v) => Some(parse_dns_server(&v).ok_or(ConfigError::Invalid {
                key: "DNS_SERVER",
                reason: "expected ip:port, e.g. 10.0.0.2:53".into(),
            })?),
        };
        let ms = |key: &'static str, d: Duration| parsed_or(src, key, d.as_millis() as u64).map(Duration::from_millis);
        Ok(Self {
            policy: UrlPolicy { allowlist, denied_hosts },
            dns_server,
            dns_timeout: ms("DNS_TIMEOUT_MS", defaults.dns_timeout)?,
            connect_timeout: ms("GITLAB_CONNECT_TIMEOUT_MS", defaults.connect_timeout)?,
            request_timeout: ms("GITLAB_HTTP_TIMEOUT_MS", defaults.request_timeout)?,
            max_body_bytes: parsed_or(src, "GITLAB_MAX_BODY_BYTES", defaults.max_body_bytes)?,
            inspect_deadline: ms("GITLAB_INSPECT_DEADLINE_MS", defaults.inspect_deadline)?,
            user_agent: defaults.user_agent,
        })
    }
}

fn parse_dns_server(v: &str) -> Option<SocketAddr> {
    v.parse::<SocketAddr>().ok().or_else(|| v.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// The real gateway: resolver, public roots and settings, built once per process.
#[derive(Clone, Debug)]
pub struct ReqwestGitlab {
    settings: GitlabSettings,
    roots: TlsRoots,
    resolver: HostResolver,
}

impl ReqwestGitlab {
    /// Loads the TLS roots and sets up the resolver.
    pub fn new(settings: GitlabSettings) -> Self {
        let resolver = HostResolver::new(settings.dns_server, settings.dns_timeout);
        Self { roots: TlsRoots::public(), resolver, settings }
    }

    /// The settings in force.
    pub fn settings(&self) -> &GitlabSettings {
        &self.settings
    }

    /// A pinned client for one instance and token.
    pub fn client(
        &self,
        instance: &ResolvedInstance,
        ca_pem: Option<&str>,
        token: SecretString,
    ) -> Result<GitlabClient, GitlabError> {
        GitlabClient::new(&self.settings, &self.roots, instance, ca_pem, token)
    }
}

#[derive(Deserialize)]
struct VersionInfo {
    version: String,
}

#[derive(Deserialize)]
struct UserInfo {
    id: u64,
    username: String,
    #[serde(default)]
    bot: bool,
    /// Present (true) only when the caller is an administrator.
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize)]
struct SelfInfo {
    #[serde(default)]
    revoked: bool,
    #[serde(default = "yes")]
    active: bool,
    scopes: Vec<String>,
    user_id: u64,
    expires_at: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct OauthInfo {
    resource_owner_id: Option<u64>,
    #[serde(default)]
    scope: Vec<String>,
    expires_in: Option<i64>,
}

/// `expires_at` is a date; GitLab tokens stop working at 00:00 UTC on that day.
fn expiry_from_date(date: &str) -> Result<OffsetDateTime, GitlabError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(date, format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| GitlabError::NotGitlab { why: "bad expires_at" })
}

fn is_token_failure(e: &GitlabError) -> bool {
    matches!(e, GitlabError::Unauthorized | GitlabError::TokenExpired | GitlabError::TokenRevoked)
}

#[async_trait]
impl GitlabGateway for ReqwestGitlab {
    #[tracing::instrument(skip_all)]
    async fn resolve(&self, url: &InstanceUrl) -> Result<ResolvedInstance, UrlRejection> {
        let addresses = match url.host() {
            // Literals were classified when the URL was parsed; there is nothing to resolve.
            InstanceHost::Ipv4(ip) => vec![IpAddr::V4(*ip)],
            InstanceHost::Ipv6(ip) => vec![IpAddr::V6(*ip)],
            InstanceHost::Domain(name) => {
                let answers =
                    self.resolver.lookup(name).await.ok_or_else(|| UrlRejection::new(UrlReason::DnsFailure))?;
                check_resolved(url.is_allowlisted(), &answers, &self.settings.policy.allowlist)
                    .map_err(UrlRejection::from_blocked)?
            }
        };
        Ok(ResolvedInstance { url: url.clone(), addresses })
    }

    #[tracing::instrument(skip_all)]
    async fn inspect_token(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
    ) -> Result<TokenReport, GitlabError> {
        let inspect = self.inspect(instance, ca_certificate, token);
        let report =
            tokio::time::timeout(self.settings.inspect_deadline, inspect).await.map_err(|_| GitlabError::Timeout)??;
        check_report(&report)?;
        Ok(report)
    }

    #[tracing::instrument(skip_all)]
    async fn list_projects(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        settings: ListingSettings,
        pages: tokio::sync::mpsc::Sender<Listed>,
    ) -> ListingReport {
        self.list(instance, ca_certificate, token, settings, pages).await
    }

    #[tracing::instrument(skip_all, fields(project_id))]
    async fn project_details(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
    ) -> Result<ListedProject, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        let project: ListedProject = client.get(&format!("/projects/{project_id}")).await?;
        if project.id != project_id {
            return Err(GitlabError::NotGitlab { why: "another project than the one asked for" });
        }
        Ok(project)
    }

    #[tracing::instrument(skip_all, fields(project_id))]
    async fn project_languages(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
    ) -> Result<std::collections::BTreeMap<String, f64>, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        let reported: std::collections::BTreeMap<String, f64> =
            client.get(&format!("/projects/{project_id}/languages")).await?;
        clean_languages(reported)
    }
}

/// Names and shares come from the instance: bounded like any input, and names are shown, so
/// bidirectional and zero-width characters are stripped (names that collide then add up).
fn clean_languages(
    reported: std::collections::BTreeMap<String, f64>,
) -> Result<std::collections::BTreeMap<String, f64>, GitlabError> {
    if reported.len() > 100 {
        return Err(GitlabError::NotGitlab { why: "bad languages" });
    }
    let mut languages = std::collections::BTreeMap::new();
    for (name, share) in reported {
        let name = crate::domain::text::strip_hidden_characters(&name);
        if name.is_empty() || name.len() > 64 || !(0.0..=100.0).contains(&share) {
            return Err(GitlabError::NotGitlab { why: "bad languages" });
        }
        *languages.entry(name).or_insert(0.0) += share;
    }
    Ok(languages)
}

/// Values from the instance end up in DynamoDB and responses: bound them like any input.
fn check_report(report: &TokenReport) -> Result<(), GitlabError> {
    let word = |s: &str, extra: &[u8], max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    if report.instance_version.as_deref().is_some_and(|v| !word(v, b".-+_", 64)) {
        return Err(GitlabError::NotGitlab { why: "bad version" });
    }
    if !report.user.username.is_empty() && !word(&report.user.username, b"._-", 255) {
        return Err(GitlabError::NotGitlab { why: "bad username" });
    }
    if let Some(scopes) = &report.scopes
        && (scopes.len() > 64 || scopes.iter().any(|s| !word(s, b"_", 64)))
    {
        return Err(GitlabError::NotGitlab { why: "bad scopes" });
    }
    Ok(())
}

impl ReqwestGitlab {
    async fn list(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        settings: ListingSettings,
        pages: tokio::sync::mpsc::Sender<Listed>,
    ) -> ListingReport {
        match self.client(instance, ca_certificate, token.clone()) {
            Ok(client) => listing::list_projects(std::sync::Arc::new(client), settings, pages).await,
            Err(e) => ListingReport { stats: ListingStats::default(), result: Err(e.into()) },
        }
    }

    async fn inspect(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
    ) -> Result<TokenReport, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        // The three reads are independent; one round trip instead of three.
        let (version, token_self, user) = tokio::join!(
            client.get::<VersionInfo>("/version"),
            client.get::<SelfInfo>("/personal_access_tokens/self"),
            client.get::<UserInfo>("/user"),
        );
        for result in [version.as_ref().err(), token_self.as_ref().err(), user.as_ref().err()].into_iter().flatten() {
            if is_token_failure(result) {
                return Err(result.clone());
            }
        }
        let instance_version = match version {
            Ok(v) => Some(v.version),
            // `/version` needs a read scope; a narrower token is judged by its scopes below.
            Err(GitlabError::InsufficientScope { .. } | GitlabError::Forbidden | GitlabError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let (oauth, scopes, expires_at, owner_id) = match token_self {
            Ok(info) => {
                if info.revoked {
                    return Err(GitlabError::TokenRevoked);
                }
                if !info.active {
                    return Err(GitlabError::TokenExpired);
                }
                let expires_at = info.expires_at.as_deref().map(expiry_from_date).transpose()?;
                (false, Some(info.scopes), expires_at, Some(info.user_id))
            }
            // Only personal-access-token types may read `/self`; OAuth tokens get 400.
            Err(GitlabError::BadRequest) => {
                let info: OauthInfo = client.get_root("/oauth/token/info").await?;
                let expires_at = info.expires_in.map(|s| OffsetDateTime::now_utc() + time::Duration::seconds(s));
                (true, Some(info.scope), expires_at, info.resource_owner_id)
            }
            // GitLab before 15.5 has no `/self`: prove read access by listing one project.
            Err(GitlabError::NotFound) => {
                let _: Vec<serde::de::IgnoredAny> =
                    client.get("/projects?membership=true&simple=true&per_page=1").await?;
                (false, None, None, None)
            }
            Err(e) => return Err(e),
        };
        let user = match user {
            Ok(u) => GitlabUser { id: u.id, username: u.username, bot: u.bot, is_admin: u.is_admin },
            // A token without a read scope cannot read `/user`; the scope check refuses it next,
            // so a placeholder user is enough.
            Err(GitlabError::InsufficientScope { .. } | GitlabError::Forbidden) if scopes.is_some() => {
                GitlabUser { id: owner_id.unwrap_or_default(), username: String::new(), bot: false, is_admin: false }
            }
            Err(e) => return Err(e),
        };
        let kind = derive_kind(oauth, &user);
        Ok(TokenReport { instance_version, kind, scopes, expires_at, user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::integration::TokenKind;

    fn report() -> TokenReport {
        TokenReport {
            instance_version: Some("17.8.1-ee".into()),
            kind: TokenKind::Personal,
            scopes: Some(vec!["api".into(), "read_repository".into()]),
            expires_at: None,
            user: GitlabUser { id: 1, username: "demo-user".into(), bot: false, is_admin: false },
        }
    }

    #[test]
    fn language_names_lose_hidden_characters() {
        let reported =
            [("Ru\u{202E}st".to_owned(), 60.0), ("Rust".to_owned(), 10.0), ("Shell\u{200B}".to_owned(), 30.0)];
        let cleaned = clean_languages(reported.into_iter().collect()).expect("valid");
        assert_eq!(cleaned, [("Rust".to_owned(), 70.0), ("Shell".to_owned(), 30.0)].into_iter().collect());
        let only_hidden = [("\u{200B}\u{200D}".to_owned(), 1.0)].into_iter().collect();
        assert!(clean_languages(only_hidden).is_err());
        let bad_share = [("Rust".to_owned(), 101.0)].into_iter().collect();
        assert!(clean_languages(bad_share).is_err());
    }

    #[test]
    fn instance_supplied_values_are_bounded() {
        assert_eq!(check_report(&report()), Ok(()));
        let mut r = report();
        r.instance_version = Some("x".repeat(300_000));
        assert!(check_report(&r).is_err());
        let mut r = report();
        r.instance_version = Some("<script>".into());
        assert!(check_report(&r).is_err());
        let mut r = report();
        r.user.username = "evil\nname".into();
        assert!(check_report(&r).is_err());
        let mut r = report();
        r.scopes = Some(vec!["api".into(); 65]);
        assert!(check_report(&r).is_err());
        let mut r = report();
        r.scopes = Some(vec!["api read_api".into()]);
        assert!(check_report(&r).is_err());
    }

    #[test]
    fn expiry_dates_mean_midnight_utc() {
        let at = expiry_from_date("2026-12-01").expect("date");
        assert_eq!(at, time::macros::datetime!(2026-12-01 00:00 UTC));
        assert!(expiry_from_date("2026-13-01").is_err());
        assert!(expiry_from_date("tomorrow").is_err());
    }

    #[test]
    fn settings_read_every_variable() {
        let vars = |k: &str| {
            Some(
                match k {
                    "OUTBOUND_ALLOWLIST" => "10.0.0.0/8,gitlab.internal.example",
                    "OWN_HOSTS" => "API.example.com, hooks.example.com",
                    "DNS_SERVER" => "10.0.0.2",
                    "GITLAB_HTTP_TIMEOUT_MS" => "1500",
                    "GITLAB_INSPECT_DEADLINE_MS" => "9000",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let s = GitlabSettings::from_vars(&vars).expect("settings");
        assert_eq!(s.dns_server, Some("10.0.0.2:53".parse().expect("addr")));
        assert_eq!(s.request_timeout, Duration::from_millis(1500));
        assert_eq!(s.inspect_deadline, Duration::from_secs(9));
        assert_eq!(s.policy.denied_hosts, vec!["api.example.com", "hooks.example.com"]);
        assert!(s.policy.allowlist.allows_host("gitlab.internal.example"));
        let bad = |k: &str| (k == "DNS_SERVER").then(|| "not-an-address".to_owned());
        assert!(GitlabSettings::from_vars(&bad).unwrap_err().to_string().contains("DNS_SERVER"));
    }
}

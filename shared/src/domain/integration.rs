//! The integration: what a team connected, what its token may do, and the rules that derive
//! capabilities, status and warnings from what GitLab reported about the token.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::ids::{IntegrationId, TeamId};

/// A token that expires within this window is reported as `token_expiring`.
pub const EXPIRY_WARNING: Duration = Duration::days(7);

/// Scopes that give more than the connector ever needs; such tokens are refused.
pub const TOO_PRIVILEGED_SCOPES: &[&str] = &["sudo", "admin_mode"];

/// Health of an integration, re-derived on connect, verify and every sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// Token valid, not close to expiry.
    Active,
    /// Token valid but expires within [`EXPIRY_WARNING`].
    TokenExpiring,
    /// GitLab says the token expired.
    TokenExpired,
    /// GitLab says the token was revoked.
    TokenRevoked,
    /// GitLab does not recognise the token.
    TokenInvalid,
    /// The token lacks a scope the connector needs.
    InsufficientScope,
    /// The instance could not be reached or did not answer like GitLab.
    Unreachable,
}

/// What kind of credential the token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A personal access token of a human user.
    Personal,
    /// A project access token (bot user `project_<id>_bot_*`).
    Project,
    /// A group access token (bot user `group_<id>_bot_*`).
    Group,
    /// A service account's token.
    ServiceAccount,
    /// An OAuth 2 access token.
    Oauth,
}

/// The GitLab user a token acts as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitlabUser {
    /// GitLab's numeric user id.
    pub id: u64,
    /// The username (for bots, GitLab's generated name).
    pub username: String,
    /// True for project, group and service-account bot users.
    pub bot: bool,
    /// An instance administrator (GitLab shows `is_admin` only to administrators).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_admin: bool,
}

/// Everything GitLab told us about a token, gathered by the GitLab adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenReport {
    /// `GET /version`, when the token may read it.
    pub instance_version: Option<String>,
    /// Derived kind.
    pub kind: TokenKind,
    /// Granted scopes; `None` when the instance cannot tell (GitLab before 15.5).
    pub scopes: Option<Vec<String>>,
    /// When the token stops working, if it expires.
    pub expires_at: Option<OffsetDateTime>,
    /// The token's user.
    pub user: GitlabUser,
}

/// What the connector may do with a token, derived from its scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// List projects (`read_api` or `api`).
    pub sync: bool,
    /// Fetch code over Git HTTP (`read_repository`, `write_repository` or `api`).
    pub clone: bool,
    /// Post merge-request notes (`api`).
    pub comment: bool,
    /// Open fix merge requests (`api`; the project role is checked when it is used).
    pub open_merge_requests: bool,
    /// Create and repair project webhooks (`api`; needs Maintainer on the project).
    pub manage_webhooks: bool,
}

/// A condition worth telling the user that does not stop the integration from working.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Stable snake_case code.
    pub code: String,
    /// One sentence for a person.
    pub message: String,
}

impl Warning {
    fn new(code: &str, message: &str) -> Self {
        Self { code: code.to_owned(), message: message.to_owned() }
    }
}

/// Why a token cannot be used for an integration at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// The token carries `sudo` or `admin_mode`: far more power than needed, refused on principle.
    TooPrivileged {
        /// The offending scopes.
        scopes: Vec<String>,
    },
    /// The token's user is an instance administrator: it reaches every project on the instance,
    /// refused unless the operator opted in.
    AdminUser,
    /// The token cannot list projects or cannot fetch code.
    MissingScopes {
        /// Scopes the token has.
        granted: Vec<String>,
        /// The smallest scopes to add.
        missing: Vec<String>,
    },
}

/// The result of judging a usable token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// Derived capabilities.
    pub capabilities: Capabilities,
    /// `Active`, `TokenExpiring` or `TokenExpired`.
    pub status: IntegrationStatus,
    /// Things the user should know.
    pub warnings: Vec<Warning>,
}

fn has(scopes: &[String], wanted: &str) -> bool {
    scopes.iter().any(|s| s == wanted)
}

/// Capabilities granted by a scope list (gitlab-api.md 1.6: `api` includes Git over HTTP;
/// `read_api` does not allow cloning; REST writes need `api`).
pub fn capabilities_for(scopes: &[String]) -> Capabilities {
    let api = has(scopes, "api");
    Capabilities {
        sync: api || has(scopes, "read_api"),
        clone: api || has(scopes, "read_repository") || has(scopes, "write_repository"),
        comment: api,
        open_merge_requests: api,
        manage_webhooks: api,
    }
}

/// Status from expiry alone: expired at or after `expires_at`, expiring within seven days.
pub fn status_for_expiry(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> IntegrationStatus {
    match expires_at {
        Some(at) if at <= now => IntegrationStatus::TokenExpired,
        Some(at) if at - now <= EXPIRY_WARNING => IntegrationStatus::TokenExpiring,
        _ => IntegrationStatus::Active,
    }
}

/// Derives the token kind from how GitLab answered and who the user is. GitLab does not name the
/// kind; bot users of project and group tokens have generated usernames
/// (`project_<id>_bot_<hex>`, `group_<id>_bot_<hex>`), service accounts `service_account_*`.
pub fn derive_kind(oauth: bool, user: &GitlabUser) -> TokenKind {
    if oauth {
        return TokenKind::Oauth;
    }
    let name = user.username.as_str();
    if name.starts_with("service_account") {
        TokenKind::ServiceAccount
    } else if user.bot && name.starts_with("project_") && name.contains("_bot") {
        TokenKind::Project
    } else if user.bot && name.starts_with("group_") && name.contains("_bot") {
        TokenKind::Group
    } else if user.bot {
        TokenKind::ServiceAccount
    } else {
        TokenKind::Personal
    }
}

/// Operator choices that change how tokens are judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Accept tokens whose user is an instance administrator (`ALLOW_ADMIN_TOKENS`).
    pub allow_admin: bool,
}

/// Judges a token: refuses over-privileged and under-scoped tokens, derives capabilities,
/// expiry status and warnings.
pub fn assess(report: &TokenReport, now: OffsetDateTime, policy: TokenPolicy) -> Result<Assessment, TokenProblem> {
    let mut warnings = Vec::new();
    let capabilities = match &report.scopes {
        Some(scopes) => {
            let too_much: Vec<String> =
                scopes.iter().filter(|s| TOO_PRIVILEGED_SCOPES.contains(&s.as_str())).cloned().collect();
            if !too_much.is_empty() {
                return Err(TokenProblem::TooPrivileged { scopes: too_much });
            }
            let caps = capabilities_for(scopes);
            let mut missing = Vec::new();
            if !caps.sync {
                missing.push("read_api".to_owned());
            }
            if !caps.clone {
                missing.push("read_repository".to_owned());
            }
            if !missing.is_empty() {
                return Err(TokenProblem::MissingScopes { granted: scopes.clone(), missing });
            }
            if !caps.comment {
                warnings.push(Warning::new(
                    "api_scope_missing",
                    "The token has no api scope: merge-request comments will not be posted, fix merge requests will not be opened and webhooks must be added by hand.",
                ));
            }
            caps
        }
        None => {
            // GitLab before 15.5 has no token self-inspection: the adapter proved read access
            // by listing projects; write access is unknown until first used.
            warnings.push(Warning::new(
                "scopes_unknown",
                "This GitLab version does not report token scopes; comments and merge requests will be tried and reported if GitLab refuses them.",
            ));
            Capabilities { sync: true, clone: true, comment: true, open_merge_requests: true, manage_webhooks: false }
        }
    };
    // After the scope checks, so a token with `sudo` is named for its scopes.
    if report.user.is_admin {
        if !policy.allow_admin {
            return Err(TokenProblem::AdminUser);
        }
        warnings.push(Warning::new(
            "admin_token_allowed",
            "The token's user is an instance administrator and can reach every project; it is accepted because the operator allowed administrator tokens.",
        ));
    }
    let status = status_for_expiry(report.expires_at, now);
    if status == IntegrationStatus::TokenExpiring {
        warnings.push(Warning::new(
            "token_expiring",
            "The token expires within seven days; rotate it to keep the integration working.",
        ));
    }
    if report.kind == TokenKind::Oauth {
        warnings.push(Warning::new(
            "oauth_token_short_lived",
            "OAuth access tokens expire two hours after they are issued; prefer a project, group or service-account token.",
        ));
    }
    Ok(Assessment { capabilities, status, warnings })
}

/// A fresh webhook secret (256 bits from `rand`'s CSPRNG, hex) and its SHA-256 (hex), which is
/// all that is stored; the secret itself is shown once (security policy 8.6.9).
pub fn new_webhook_secret() -> (secrecy::SecretString, String) {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let digest = webhook_secret_digest(&secret);
    (secrecy::SecretString::from(secret), digest)
}

/// SHA-256 (hex) of a webhook secret as GitLab will send it in `X-Gitlab-Token`.
pub fn webhook_secret_digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// How webhooks reach the connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookMode {
    /// The connector registers and repairs project hooks itself.
    Managed,
    /// A person adds the hook in GitLab with the URL and secret shown at connect time.
    Manual,
}

/// How GitLab delivers events for this integration. The delivery URL is not stored: it is
/// derived from the deployment's webhook base URL whenever the integration is shown
/// ([`webhook_url`]), so a moved endpoint never leaves stale URLs behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// Managed or manual.
    pub mode: WebhookMode,
    /// Event kinds the connector acts on.
    pub events: Vec<String>,
    /// Secrets Manager reference of the Standard Webhooks signing key, when deliveries are
    /// signed; such an integration accepts only signed deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_ref: Option<String>,
    /// Secrets Manager reference of the webhook secret itself, kept only for managed hooks
    /// (GitLab must be given it); manual integrations keep only its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_secret_ref: Option<String>,
    /// The replaced secret's SHA-256 while a rotation's grace period lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_sha256: Option<String>,
    /// When the replaced secret stops being accepted.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<OffsetDateTime>,
}

/// Event kinds the connector acts on, as GitLab's hook settings name them; shown so a person
/// adding the hook by hand ticks the right boxes.
pub const WEBHOOK_EVENTS: &[&str] =
    &["merge_requests_events", "push_events", "note_events", "vulnerability_events", "resource_access_token_events"];

/// The delivery URL of an integration: `<base>/webhooks/gitlab/<id>`.
pub fn webhook_url(base: &str, id: &IntegrationId) -> String {
    format!("{}/webhooks/gitlab/{id}", base.trim_end_matches('/'))
}

/// Token facts that are safe to store and show (never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Derived kind.
    pub kind: Option<TokenKind>,
    /// Granted scopes (empty when unknown).
    pub scopes: Vec<String>,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
    /// Last time GitLab confirmed the token.
    #[serde(with = "time::serde::rfc3339")]
    pub last_verified_at: OffsetDateTime,
}

/// Facts about the GitLab instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// `GET /version`, when readable.
    pub version: Option<String>,
    /// PEM bundle of a private CA trusted for this integration only (not a secret).
    pub ca_certificate: Option<String>,
}

/// A connected GitLab instance, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    /// Opaque id.
    pub id: IntegrationId,
    /// Owning team.
    pub team_id: TeamId,
    /// Display name.
    pub name: String,
    /// Normalised base URL (origin plus relative root).
    pub instance_url: String,
    /// `instance_url` + `/api/v4`.
    pub api_url: String,
    /// Current health.
    pub status: IntegrationStatus,
    /// Instance facts.
    pub instance: InstanceInfo,
    /// Token facts.
    pub token: TokenInfo,
    /// The token's user.
    pub user: GitlabUser,
    /// Derived capabilities.
    pub capabilities: Capabilities,
    /// Webhook delivery settings.
    pub webhook: WebhookSettings,
    /// SHA-256 (hex) of the webhook secret; the secret itself is shown once and never stored.
    pub webhook_secret_sha256: String,
    /// Secrets Manager reference (ARN) of the token secret.
    pub secret_ref: String,
    /// Conditions to show the user.
    pub warnings: Vec<Warning>,
    /// What the connector writes into merge requests (within the capabilities).
    #[serde(default)]
    pub report: crate::domain::report::ReportSettings,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Integration {
    /// SHA-256 digests (hex) of the webhook secrets accepted at `now`: the current one and,
    /// until its grace period ends, the one a rotation replaced.
    pub fn accepted_secret_digests(&self, now: OffsetDateTime) -> Vec<&str> {
        let mut digests = vec![self.webhook_secret_sha256.as_str()];
        if let (Some(previous), Some(until)) = (&self.webhook.previous_secret_sha256, self.webhook.previous_valid_until)
            && now < until
        {
            digests.push(previous);
        }
        digests
    }

    /// Replaces the webhook secret; the old one stays accepted for `grace`. Returns the new
    /// secret, to be shown once.
    pub fn rotate_webhook_secret(&mut self, grace: Duration, now: OffsetDateTime) -> secrecy::SecretString {
        let (secret, digest) = new_webhook_secret();
        let previous = std::mem::replace(&mut self.webhook_secret_sha256, digest);
        self.webhook.previous_secret_sha256 = Some(previous);
        self.webhook.previous_valid_until = Some(now + grace);
        secret
    }

    /// Applies a fresh token report and assessment (connect, rotate, verify).
    pub fn apply_assessment(&mut self, report: &TokenReport, assessment: Assessment, now: OffsetDateTime) {
        self.status = assessment.status;
        self.capabilities = assessment.capabilities;
        self.warnings = assessment.warnings;
        self.instance.version = report.instance_version.clone().or(self.instance.version.take());
        self.token = TokenInfo {
            kind: Some(report.kind),
            scopes: report.scopes.clone().unwrap_or_default(),
            expires_at: report.expires_at,
            last_verified_at: now,
        };
        self.user = report.user.clone();
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn report(list: &[&str], expires_at: Option<OffsetDateTime>, kind: TokenKind) -> TokenReport {
        TokenReport {
            instance_version: Some("17.8.1".into()),
            kind,
            scopes: Some(scopes(list)),
            expires_at,
            user: GitlabUser { id: 1, username: "u".into(), bot: false, is_admin: false },
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    #[test]
    fn api_scope_grants_everything() {
        let a = assess(&report(&["api"], None, TokenKind::Personal), NOW, TokenPolicy::default()).expect("usable");
        assert_eq!(
            a.capabilities,
            Capabilities { sync: true, clone: true, comment: true, open_merge_requests: true, manage_webhooks: true }
        );
        assert_eq!(a.status, IntegrationStatus::Active);
        assert!(a.warnings.is_empty());
    }

    #[test]
    fn read_scopes_sync_and_clone_but_warn_about_comments() {
        let a =
            assess(&report(&["read_api", "read_repository"], None, TokenKind::Project), NOW, TokenPolicy::default())
                .expect("usable");
        assert!(a.capabilities.sync && a.capabilities.clone);
        assert!(!a.capabilities.comment && !a.capabilities.manage_webhooks);
        assert_eq!(a.warnings[0].code, "api_scope_missing");
    }

    #[test]
    fn missing_scopes_name_the_smallest_additions() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["read_repository"], &["read_api"]),
            (&["read_api"], &["read_repository"]),
            (&["read_user"], &["read_api", "read_repository"]),
            (&[], &["read_api", "read_repository"]),
            (&["write_repository"], &["read_api"]),
        ];
        for (granted, missing) in cases {
            match assess(&report(granted, None, TokenKind::Personal), NOW, TokenPolicy::default()) {
                Err(TokenProblem::MissingScopes { missing: m, granted: g }) => {
                    assert_eq!(m, scopes(missing));
                    assert_eq!(g, scopes(granted));
                }
                other => panic!("{granted:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn sudo_and_admin_mode_are_refused_even_with_everything_else() {
        for bad in [&["api", "sudo"][..], &["api", "admin_mode"], &["read_api", "read_repository", "sudo"]] {
            assert!(matches!(
                assess(&report(bad, None, TokenKind::Personal), NOW, TokenPolicy::default()),
                Err(TokenProblem::TooPrivileged { .. })
            ));
        }
    }

    #[test]
    fn expiry_boundaries() {
        assert_eq!(status_for_expiry(None, NOW), IntegrationStatus::Active);
        assert_eq!(status_for_expiry(Some(NOW), NOW), IntegrationStatus::TokenExpired);
        assert_eq!(status_for_expiry(Some(NOW - Duration::seconds(1)), NOW), IntegrationStatus::TokenExpired);
        assert_eq!(status_for_expiry(Some(NOW + Duration::days(7)), NOW), IntegrationStatus::TokenExpiring);
        assert_eq!(
            status_for_expiry(Some(NOW + Duration::days(7) + Duration::seconds(1)), NOW),
            IntegrationStatus::Active
        );
        let a =
            assess(&report(&["api"], Some(NOW + Duration::days(2)), TokenKind::Personal), NOW, TokenPolicy::default())
                .expect("usable");
        assert_eq!(a.status, IntegrationStatus::TokenExpiring);
        assert!(a.warnings.iter().any(|w| w.code == "token_expiring"));
    }

    #[test]
    fn kinds_follow_gitlab_bot_naming() {
        let user = |name: &str, bot: bool| GitlabUser { id: 2, username: name.into(), bot, is_admin: false };
        assert_eq!(derive_kind(false, &user("alice", false)), TokenKind::Personal);
        assert_eq!(derive_kind(false, &user("project_12_bot_4c1a2f", true)), TokenKind::Project);
        assert_eq!(derive_kind(false, &user("group_7_bot_9e8d", true)), TokenKind::Group);
        assert_eq!(derive_kind(false, &user("service_account_group_7_abc", true)), TokenKind::ServiceAccount);
        assert_eq!(derive_kind(false, &user("scanner-bot", true)), TokenKind::ServiceAccount);
        assert_eq!(derive_kind(false, &user("project_12_bot_x", false)), TokenKind::Personal);
        assert_eq!(derive_kind(true, &user("alice", false)), TokenKind::Oauth);
    }

    #[test]
    fn webhook_secrets_are_256_bit_and_only_their_digest_is_kept() {
        use secrecy::ExposeSecret;
        let (a, digest_a) = new_webhook_secret();
        let (b, _) = new_webhook_secret();
        assert_eq!(a.expose_secret().len(), 64);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(digest_a, webhook_secret_digest(a.expose_secret()));
        assert_ne!(digest_a.as_str(), a.expose_secret());
    }

    #[test]
    fn a_rotated_webhook_secret_keeps_the_old_one_for_the_grace_period() {
        let mut i = crate::testing::sample_integration(&TeamId::parse("t").expect("team"), &IntegrationId::generate());
        i.webhook_secret_sha256 = "old".into();
        assert_eq!(i.accepted_secret_digests(NOW), vec!["old"]);
        let secret = i.rotate_webhook_secret(Duration::hours(24), NOW);
        use secrecy::ExposeSecret;
        let new = webhook_secret_digest(secret.expose_secret());
        assert_eq!(i.accepted_secret_digests(NOW), vec![new.as_str(), "old"]);
        assert_eq!(i.accepted_secret_digests(NOW + Duration::hours(24)), vec![new.as_str()]);
        // A second rotation replaces the grace secret: only one previous secret is ever kept.
        let _ = i.rotate_webhook_secret(Duration::hours(24), NOW);
        assert_eq!(i.accepted_secret_digests(NOW).len(), 2);
        assert!(!i.accepted_secret_digests(NOW).contains(&"old"));
    }

    #[test]
    fn unknown_scopes_assume_read_access_and_warn() {
        let mut r = report(&[], None, TokenKind::Personal);
        r.scopes = None;
        let a = assess(&r, NOW, TokenPolicy::default()).expect("usable");
        assert!(a.capabilities.sync && !a.capabilities.manage_webhooks);
        assert_eq!(a.warnings[0].code, "scopes_unknown");
    }

    #[test]
    fn an_administrators_token_needs_the_operators_opt_in() {
        let mut r = report(&["api", "read_repository"], None, TokenKind::Personal);
        r.user.is_admin = true;
        assert_eq!(assess(&r, NOW, TokenPolicy::default()), Err(TokenProblem::AdminUser));
        let allowed = assess(&r, NOW, TokenPolicy { allow_admin: true }).expect("allowed");
        assert!(allowed.warnings.iter().any(|w| w.code == "admin_token_allowed"));
        // `sudo` is still named for its scope, whatever the user.
        let mut sudo = report(&["api", "sudo"], None, TokenKind::Personal);
        sudo.user.is_admin = true;
        assert!(matches!(
            assess(&sudo, NOW, TokenPolicy { allow_admin: true }),
            Err(TokenProblem::TooPrivileged { .. })
        ));
    }

    #[test]
    fn oauth_tokens_are_flagged_short_lived() {
        let a =
            assess(&report(&["api"], Some(NOW + Duration::hours(2)), TokenKind::Oauth), NOW, TokenPolicy::default())
                .expect("usable");
        assert_eq!(a.status, IntegrationStatus::TokenExpiring);
        assert!(a.warnings.iter().any(|w| w.code == "oauth_token_short_lived"));
    }
}

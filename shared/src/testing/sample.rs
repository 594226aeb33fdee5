//! A complete, valid integration to start tests from; tests change the fields they care about.

use time::OffsetDateTime;

use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::integration::{
    Capabilities, GitlabUser, InstanceInfo, Integration, IntegrationStatus, TokenInfo, TokenKind, WebhookMode,
    WebhookSettings,
};

/// An active, manual-webhook integration of `team` on `https://gitlab.example.com`, created now,
/// whose token acts as GitLab user 1 and whose webhook secret digest is empty (refuses all).
pub fn sample_integration(team: &TeamId, id: &IntegrationId) -> Integration {
    let now = OffsetDateTime::now_utc();
    Integration {
        id: id.clone(),
        team_id: team.clone(),
        name: "test".into(),
        instance_url: "https://gitlab.example.com".into(),
        api_url: "https://gitlab.example.com/api/v4".into(),
        status: IntegrationStatus::Active,
        instance: InstanceInfo { version: None, ca_certificate: None },
        token: TokenInfo {
            kind: Some(TokenKind::Personal),
            scopes: vec!["api".into()],
            expires_at: None,
            last_verified_at: now,
        },
        user: GitlabUser { id: 1, username: "u".into(), bot: false, is_admin: false },
        capabilities: Capabilities::default(),
        webhook: WebhookSettings {
            mode: WebhookMode::Manual,
            events: vec![],
            signing_key_ref: None,
            hook_secret_ref: None,
            previous_secret_sha256: None,
            previous_valid_until: None,
        },
        webhook_secret_sha256: String::new(),
        secret_ref: String::new(),
        warnings: vec![],
        report: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

//! What the simulator serves: instance settings, tokens, users, projects and the misbehaviour mode.

use std::time::Duration;

use time::{Date, OffsetDateTime};

/// The demo token strings that [`SimConfig::default`] serves (also listed in the crate README).
pub mod demo {
    /// Personal, `api` + `read_repository`, user `demo-user`, expires in 300 days.
    pub const API: &str = "glpat-demo-api-0000000000001";
    /// Personal, `read_api` + `read_repository`.
    pub const READONLY: &str = "glpat-demo-readonly-000000002";
    /// Project access token (`api`) owned by a bot user.
    pub const PROJECT_BOT: &str = "glpat-demo-project-bot-0000003";
    /// Personal, expired.
    pub const EXPIRED: &str = "glpat-demo-expired-000000004";
    /// Personal, revoked.
    pub const REVOKED: &str = "glpat-demo-revoked-000000005";
    /// Personal, `api` + `read_repository`, expires in 3 days.
    pub const EXPIRING: &str = "glpat-demo-expiring-00000006";
    /// Personal, `api` + `sudo`, owned by an administrator.
    pub const SUDO: &str = "glpat-demo-sudo-0000000000007";
    /// Personal, `read_repository` only.
    pub const READ_REPO: &str = "glpat-demo-readrepo-00000008";
    /// OAuth access token, `api`, valid for 7200 s from when the simulator starts.
    pub const OAUTH: &str = "gloas-demo-oauth-00000000009";
}

/// Everything a simulated instance knows.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Relative URL root: `""` or for example `"/gitlab"`.
    pub base_path: String,
    /// Reported by `GET /api/v4/version`, for example `"17.8.1-ee"`.
    pub version: String,
    pub tokens: Vec<SimToken>,
    pub projects: Vec<SimProject>,
    pub behaviour: Behaviour,
    /// Extra DNS names for the server certificate besides `localhost`, `127.0.0.1` and `::1`.
    pub cert_names: Vec<String>,
}

/// The token types GitLab distinguishes. All but `Oauth` are `PersonalAccessToken` rows in GitLab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Personal,
    Project,
    Group,
    ServiceAccount,
    Oauth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    pub id: u64,
    pub username: String,
    pub name: String,
    pub bot: bool,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimToken {
    pub token: String,
    pub kind: TokenKind,
    pub scopes: Vec<String>,
    /// Personal-type tokens expire at 00:00 UTC on this date. For OAuth tokens `None` means the
    /// Doorkeeper default of 7200 s after the simulator learnt the token.
    pub expires_at: Option<Date>,
    pub expired: bool,
    pub revoked: bool,
    pub user: SimUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimProject {
    pub id: u64,
    pub path_with_namespace: String,
    pub default_branch: Option<String>,
    /// `private`, `internal` or `public`.
    pub visibility: String,
    pub archived: bool,
    pub empty_repo: bool,
}

/// How the server misbehaves. Anything but `Normal` applies to every route under the base path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    #[default]
    Normal,
    /// Sleep this long before answering.
    SlowHeaders(Duration),
    /// `200 application/json` whose body never ends.
    EndlessBody,
    /// `200 application/json` with a body of exactly this many bytes.
    HugeBody(usize),
    /// `302` with `Location` set to this URL.
    Redirect(String),
    /// `200 text/html` sign-in page, like a proxy or SSO wall in front of GitLab.
    Html,
    /// `404 text/html` from a web server that is not GitLab.
    NotFound,
}

impl Default for SimConfig {
    fn default() -> Self {
        let today = OffsetDateTime::now_utc().date();
        let in_days = |days: i64| today.checked_add(time::Duration::days(days));
        let demo_user =
            SimUser { id: 101, username: "demo-user".into(), name: "Demo User".into(), bot: false, is_admin: false };
        let personal = |token: &str, scopes: &[&str], expires_at: Option<Date>| SimToken {
            token: token.into(),
            kind: TokenKind::Personal,
            scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
            expires_at,
            expired: false,
            revoked: false,
            user: demo_user.clone(),
        };
        let year = in_days(300);
        let tokens = vec![
            personal(demo::API, &["api", "read_repository"], year),
            personal(demo::READONLY, &["read_api", "read_repository"], year),
            SimToken {
                kind: TokenKind::Project,
                user: SimUser {
                    id: 201,
                    username: "project_1_bot_4c1a2f".into(),
                    name: "demo-project-token".into(),
                    bot: true,
                    is_admin: false,
                },
                ..personal(demo::PROJECT_BOT, &["api"], year)
            },
            SimToken { expired: true, ..personal(demo::EXPIRED, &["api", "read_repository"], in_days(-1)) },
            SimToken { revoked: true, ..personal(demo::REVOKED, &["api", "read_repository"], year) },
            personal(demo::EXPIRING, &["api", "read_repository"], in_days(3)),
            SimToken {
                user: SimUser {
                    id: 1,
                    username: "root".into(),
                    name: "Administrator".into(),
                    bot: false,
                    is_admin: true,
                },
                ..personal(demo::SUDO, &["api", "sudo"], year)
            },
            personal(demo::READ_REPO, &["read_repository"], year),
            SimToken { kind: TokenKind::Oauth, ..personal(demo::OAUTH, &["api"], None) },
        ];
        let project = |id: u64, path: &str, branch: Option<&str>, visibility: &str| SimProject {
            id,
            path_with_namespace: path.into(),
            default_branch: branch.map(str::to_string),
            visibility: visibility.into(),
            archived: false,
            empty_repo: branch.is_none(),
        };
        let projects = vec![
            project(1, "demo/backend", Some("main"), "private"),
            project(2, "demo/frontend", Some("main"), "internal"),
            project(3, "demo/docs", None, "public"),
        ];
        SimConfig {
            base_path: String::new(),
            version: "17.8.1-ee".into(),
            tokens,
            projects,
            behaviour: Behaviour::Normal,
            cert_names: Vec::new(),
        }
    }
}

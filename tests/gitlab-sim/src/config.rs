//! What the simulator serves: instance settings, tokens, users, projects and the misbehaviour mode.

use std::path::PathBuf;
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
    /// Personal, `api` + `read_repository` (no `sudo`), owned by an instance administrator.
    pub const ADMIN: &str = "glpat-demo-admin-000000000010";
}

/// Everything a simulated instance knows.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Relative URL root: `""` or for example `"/gitlab"`.
    pub base_path: String,
    /// Reported by `GET /api/v4/version`, for example `"17.8.1-ee"`.
    pub version: String,
    pub tokens: Vec<SimToken>,
    /// Any order; the server sorts them by id (ids must be unique, later duplicates are dropped).
    pub projects: Vec<SimProject>,
    pub behaviour: Behaviour,
    /// Extra DNS names for the server certificate besides `localhost`, `127.0.0.1` and `::1`.
    pub cert_names: Vec<String>,
    /// Delay before every `/api/...` answer (changeable at run time with `RunningSim::set_latency`).
    pub latency: Duration,
    /// Budget for `GET /api/v4/projects`; `None` is unlimited (GitLab Self-Managed's default).
    pub rate_limit: Option<RateLimit>,
    /// GitLab's `offset_pagination_limit` plan limit: offset pagination of `/projects` with
    /// `page * per_page` above it gets GitLab's 405. 0 turns the check off. Default 50,000.
    pub offset_pagination_limit: u64,
    /// What `default_branch` shows for a project without one (an empty repository). `None`
    /// sends `null`; GitLab 14.x and later expose `default_branch_or_main`, i.e. the instance's
    /// default branch name, usually `Some("main")`. See FIXTURES.md.
    pub empty_repo_default_branch: Option<String>,
    /// Hostile behaviour of the project listing (changeable with `RunningSim::set_listing_mode`).
    pub listing_mode: ListingMode,
}

/// A budget for `GET /api/v4/projects`: at most `requests` per `window`, answered in `style`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
    pub style: RateLimitStyle,
}

impl RateLimit {
    /// GitLab.com's projects-list limit: 2,000 requests per 10 minutes, an application limit
    /// whose 429 carries only `Retry-After` (doc/user/gitlab_com/rate_limits.md).
    pub fn gitlab_com() -> Self {
        RateLimit { requests: 2000, window: Duration::from_secs(600), style: RateLimitStyle::RetryAfterOnly }
    }
}

/// How a rate limit shows itself. FIXTURES.md names the GitLab code behind each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitStyle {
    /// A Rack::Attack throttle (`throttle_authenticated_api`): windows aligned to the Unix epoch;
    /// 429 `text/plain` `Retry later\n` with `Retry-After`, `RateLimit-Limit`, `-Name`,
    /// `-Observed`, `-Remaining`, `-Reset`, `-ResetTime`; successful answers carry the five
    /// informational `RateLimit-*` headers.
    #[default]
    RackAttack,
    /// GitLab's `projects_api` application limit (current code): the window starts with the first
    /// request; 429 `application/json`
    /// `{"message":{"error":"This endpoint has been requested too many times. Try again later."}}`
    /// with only `Retry-After` (the whole window, in seconds); no headers on successful answers.
    RetryAfterOnly,
    /// The same application limit as answered by older GitLab: same body, no headers at all.
    NoHeaders,
}

/// Hostile ways to answer `GET /api/v4/projects`, switchable at run time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListingMode {
    #[default]
    Normal,
    /// `rel="next"` points at another origin, [`FOREIGN_ORIGIN`].
    ForeignNextLink,
    /// `rel="next"` uses `http://` on the simulator's own host and port.
    HttpNextLink,
    /// `rel="next"` repeats the request's cursor (`id_after`/`id_before`, or `page` with offset
    /// pagination), so following it returns the same page forever.
    StuckCursor,
    /// Ignores `per_page` and answers this many projects per page (about 1 kB each with
    /// `simple=true`, about 4 kB with the full entity, so 5,000 make a body of about 20 MB).
    HugePage(usize),
    /// Answers every listing by descending id (the highest-id probe; keyset or offset) with
    /// this id on its first project, such as one near `u64::MAX`, which no GitLab can produce (ids are `bigint`).
    HugeTopId(u64),
    /// Gives the last project of every ascending page this id (and so the next link's cursor).
    HugeIdInPage(u64),
}

/// The origin `ListingMode::ForeignNextLink` points to.
pub const FOREIGN_ORIGIN: &str = "https://gitlab.attacker.test";

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

/// One project. [`SimProject::new`] fills in plausible values; `crate::generate_projects`
/// makes many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimProject {
    pub id: u64,
    /// `group/subgroup/project`; the namespace is everything before the last `/`.
    pub path_with_namespace: String,
    /// `None` for an empty repository (see `SimConfig::empty_repo_default_branch`).
    pub default_branch: Option<String>,
    /// `private`, `internal` or `public`.
    pub visibility: String,
    pub archived: bool,
    pub empty_repo: bool,
    /// Display name; `None` shows the last path segment.
    pub name: Option<String>,
    pub description: Option<String>,
    /// Topic names, sorted (GitLab sorts them).
    pub topics: Vec<String>,
    pub created_at: OffsetDateTime,
    /// GitLab updates this at most once an hour, on pushes, issues, comments and the like.
    pub last_activity_at: OffsetDateTime,
    /// Changes on any change to the project row (renames, transfers, settings).
    pub updated_at: OffsetDateTime,
    /// `(language, share in hundredths of a percent)`, largest first: `("Rust", 6669)` is
    /// reported as `"Rust": 66.69` by `GET /projects/:id/languages`.
    pub languages: Vec<(String, u32)>,
    pub star_count: u64,
    pub forks_count: u64,
    pub open_issues_count: u64,
    /// Set for projects pending deletion (`marked_for_deletion_at` / `_on` in the full entity).
    pub marked_for_deletion_on: Option<Date>,
    /// The bare repository served over Git smart HTTP (`/<path>.git/...`); `None` answers git
    /// requests with GitLab's 404 "A repository for this project does not exist yet."
    pub repo: Option<PathBuf>,
    /// Ids of the users who are members (the simulator makes every member a Maintainer).
    /// `None`, the default, makes every user a member of every project.
    pub members: Option<Vec<u64>>,
}

impl SimProject {
    /// A private project on `main`, created 200 days ago, active 3 hours ago, no topics.
    pub fn new(id: u64, path_with_namespace: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        SimProject {
            id,
            path_with_namespace: path_with_namespace.to_string(),
            default_branch: Some("main".into()),
            visibility: "private".into(),
            archived: false,
            empty_repo: false,
            name: None,
            description: None,
            topics: Vec::new(),
            created_at: now - time::Duration::days(200) + time::Duration::hours(id as i64 % 4000),
            last_activity_at: now - time::Duration::hours(3),
            updated_at: now - time::Duration::hours(3),
            languages: vec![("Rust".into(), 10_000)],
            star_count: 0,
            forks_count: 0,
            open_issues_count: 0,
            marked_for_deletion_on: None,
            repo: None,
            members: None,
        }
    }

    /// Whether `user` (`None`: anonymous) can see the project, as GitLab's `read_project`:
    /// public projects for everyone, internal ones for every signed-in user except bots,
    /// private ones for members, and everything for administrators. With `members: None`
    /// every user is a member.
    pub fn readable_by(&self, user: Option<&SimUser>) -> bool {
        let Some(user) = user else { return self.visibility == "public" };
        let member = self.members.as_ref().is_none_or(|ids| ids.contains(&user.id));
        // Internal projects are for "any signed-in user except external users"; the bots behind
        // project and group tokens count as external here (UNCONFIRMED, see FIXTURES.md).
        user.is_admin
            || member
            || match self.visibility.as_str() {
                "public" => true,
                "internal" => !user.bot,
                _ => false,
            }
    }

    /// The same project with an empty repository: no default branch, no languages.
    pub fn empty(mut self) -> Self {
        self.default_branch = None;
        self.empty_repo = true;
        self.languages.clear();
        self
    }

    /// The last path segment.
    pub fn path(&self) -> &str {
        self.path_with_namespace.rsplit_once('/').map_or(self.path_with_namespace.as_str(), |(_, p)| p)
    }

    /// The namespace's full path (empty for a project without one).
    pub fn namespace_path(&self) -> &str {
        self.path_with_namespace.rsplit_once('/').map_or("", |(ns, _)| ns)
    }
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
            SimToken {
                user: SimUser {
                    id: 2,
                    username: "ops-admin".into(),
                    name: "Operations Administrator".into(),
                    bot: false,
                    is_admin: true,
                },
                ..personal(demo::ADMIN, &["api", "read_repository"], year)
            },
            personal(demo::READ_REPO, &["read_repository"], year),
            SimToken { kind: TokenKind::Oauth, ..personal(demo::OAUTH, &["api"], None) },
        ];
        let project = |id: u64, path: &str, visibility: &str| SimProject {
            visibility: visibility.into(),
            languages: vec![("Rust".into(), 8120), ("Shell".into(), 1880)],
            ..SimProject::new(id, path)
        };
        let projects = vec![
            project(1, "demo/backend", "private"),
            project(2, "demo/frontend", "internal"),
            project(3, "demo/docs", "public").empty(),
        ];
        SimConfig {
            base_path: String::new(),
            version: "17.8.1-ee".into(),
            tokens,
            projects,
            behaviour: Behaviour::Normal,
            cert_names: Vec::new(),
            latency: Duration::ZERO,
            rate_limit: None,
            offset_pagination_limit: 50_000,
            empty_repo_default_branch: None,
            listing_mode: ListingMode::Normal,
        }
    }
}

impl SimConfig {
    /// The demo instance (tokens and all) with `n` generated projects instead of the three demo
    /// ones; see `crate::generate_projects` (seed 1).
    pub fn with_generated_projects(n: usize) -> Self {
        SimConfig { projects: crate::generate::generate_projects(n, 1), ..SimConfig::default() }
    }
}

//! GitLab's routes: token checks as `lib/api/api_guard.rb` does them, and the response entities.
//! Which GitLab file or doc each body and rule comes from is listed in FIXTURES.md.

use axum::body::Body;
use axum::http::header::{ALLOW, CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Serialize;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use crate::config::TokenKind;
use crate::projects;
use crate::server::{
    GITLAB_404_PAGE, ReqCtx, SIGN_IN_PAGE, Shared, TokenEntry, fnv1a, html, redirect, set_header, with_body,
};

/// Doorkeeper's `access_token_expires_in` in GitLab's `config/initializers/doorkeeper.rb`.
const OAUTH_LIFETIME: Duration = Duration::seconds(7200);

/// A scope registered with `allow_access_with_scope`; `get_only` mirrors
/// `if: ->(request) { request.get? || request.head? }`.
#[derive(Clone, Copy)]
pub(crate) struct Scope {
    name: &'static str,
    get_only: bool,
}

const fn scope(name: &'static str, get_only: bool) -> Scope {
    Scope { name, get_only }
}

/// `API::API` registers these for every endpoint; they come after the endpoint's own.
pub(crate) const API_WIDE: [Scope; 2] = [scope("api", false), scope("read_api", true)];
/// Endpoints that change things accept only `api`.
pub(crate) const API_ONLY: [Scope; 1] = [API_WIDE[0]];
/// `lib/api/metadata.rb` (serves `/version` since 15.5).
const METADATA: [Scope; 4] = [scope("read_user", true), scope("ai_features", true), API_WIDE[0], API_WIDE[1]];
/// `lib/api/users.rb`.
const USERS: [Scope; 3] = [scope("read_user", true), API_WIDE[0], API_WIDE[1]];

#[derive(Clone, Copy)]
pub(crate) enum Scopes {
    /// `allow_access_with_scope(Gitlab::Auth.all_available_scopes)`: any token passes.
    Any,
    Only(&'static [Scope]),
}

/// `/api/v4/projects/<numeric id>/hooks...` → the id and what follows `hooks`.
fn hooks_path(rest: &str) -> Option<(u64, &str)> {
    let tail = rest.strip_prefix("/api/v4/projects/")?;
    let (id, sub) = tail.split_once('/')?;
    let sub = sub.strip_prefix("hooks")?;
    (sub.is_empty() || sub.starts_with('/')).then_some(())?;
    Some((id.parse().ok()?, sub))
}

pub(crate) async fn dispatch(shared: &Shared, ctx: &ReqCtx) -> Response {
    let is_read = ctx.method == Method::GET || ctx.method == Method::HEAD;
    match ctx.rest.as_str() {
        "/api/v4/version" | "/api/v4/metadata" if is_read => match authenticate(shared, ctx, Scopes::Only(&METADATA)) {
            Ok(_) => version(shared),
            Err(denied) => denied.into_response(),
        },
        "/api/v4/user" if is_read => match authenticate(shared, ctx, Scopes::Only(&USERS)) {
            Ok(entry) => ok_json(&user_json(shared, ctx, &entry)),
            Err(denied) => denied.into_response(),
        },
        "/api/v4/personal_access_tokens/self" if is_read || ctx.method == Method::DELETE => pat_self(shared, ctx),
        "/api/v4/projects" if is_read => projects::list(shared, ctx),
        "/api/v4/version" | "/api/v4/metadata" | "/api/v4/user" => method_not_allowed("OPTIONS, GET, HEAD"),
        "/api/v4/projects" => method_not_allowed("OPTIONS, GET, HEAD, POST"),
        rest if hooks_path(rest).is_some() => {
            let Some((id, sub)) = hooks_path(rest) else { return html(StatusCode::NOT_FOUND, GITLAB_404_PAGE) };
            let project = shared.projects().get(id).cloned();
            match project {
                Some(project) => crate::hooks::route(shared, ctx, &project, sub).await,
                None => json(StatusCode::NOT_FOUND, &serde_json::json!({"message": "404 Project Not Found"})),
            }
        }
        rest if crate::merge_requests::is_route(rest) => crate::merge_requests::route(shared, ctx),
        "/api/graphql" => crate::graphql::handle(shared, ctx),
        rest if rest.starts_with("/api/v4/projects/") => {
            projects::by_id(shared, ctx, &rest["/api/v4/projects/".len()..])
        }
        rest if rest.starts_with("/-/sim/projects/") => {
            crate::hooks::raise(shared, ctx, &rest["/-/sim/projects/".len()..]).await
        }
        "/api/v4/personal_access_tokens/self" => method_not_allowed("OPTIONS, GET, HEAD, DELETE"),
        "/oauth/token/info" if is_read => token_info(shared, ctx),
        "" | "/" if is_read => redirect(&format!("{}{}/users/sign_in", ctx.origin, ctx.base_path)),
        "/users/sign_in" if is_read => html(StatusCode::OK, SIGN_IN_PAGE),
        rest if crate::git::is_git_path(rest) => crate::git::serve(shared, ctx).await,
        rest if rest == "/api" || rest.starts_with("/api/") => {
            // Grape's catch-all `route :any, '*path'` in lib/api/api.rb; no authentication.
            json(StatusCode::NOT_FOUND, &serde_json::json!({"error": "404 Not Found"}))
        }
        _ => html(StatusCode::NOT_FOUND, GITLAB_404_PAGE),
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// The token from `Authorization: Bearer …`, as Doorkeeper's `from_bearer_authorization` reads it.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case("bearer ") && !token.is_empty()).then_some(token)
}

fn private_token(headers: &HeaderMap) -> Option<&str> {
    let token = headers.get("private-token")?.to_str().ok()?;
    (!token.is_empty()).then_some(token)
}

/// Finds the token like `Gitlab::Auth::AuthFinders#access_token`: a Bearer value is tried as an
/// OAuth token first, then `PRIVATE-TOKEN` or the Bearer value as a personal access token.
/// `Ok(None)` means no token was sent; `Err(())` means one was sent but is unknown.
fn find_token(entries: &[TokenEntry], headers: &HeaderMap) -> Result<Option<usize>, ()> {
    let bearer = bearer_token(headers);
    let oauth = bearer
        .and_then(|bearer| entries.iter().position(|e| e.token.kind == TokenKind::Oauth && e.token.token == bearer));
    if oauth.is_some() {
        return Ok(oauth);
    }
    let Some(candidate) = private_token(headers).or(bearer) else {
        return Ok(None);
    };
    entries.iter().position(|e| e.token.kind != TokenKind::Oauth && e.token.token == candidate).map(Some).ok_or(())
}

pub(crate) fn is_expired(entry: &TokenEntry, now: OffsetDateTime) -> bool {
    if entry.token.expired {
        return true;
    }
    match entry.token.expires_at {
        // A token expires at 00:00 UTC on its expiry date.
        Some(date) => date <= now.date(),
        None => entry.token.kind == TokenKind::Oauth && now >= entry.created_at + OAUTH_LIFETIME,
    }
}

fn oauth_expires_in(entry: &TokenEntry, now: OffsetDateTime) -> i64 {
    let expires = match entry.token.expires_at {
        Some(date) => date.midnight().assume_utc(),
        None => entry.created_at + OAUTH_LIFETIME,
    };
    (expires - now).whole_seconds().max(0)
}

/// Authenticates and checks scopes in GitLab's order: unknown token, expired, revoked, scope.
/// A request without any token comes back as `Ok(None)`.
pub(crate) fn authenticate_optional(
    shared: &Shared,
    ctx: &ReqCtx,
    scopes: Scopes,
) -> Result<Option<TokenEntry>, Denied> {
    let now = OffsetDateTime::now_utc();
    let mut state = shared.lock();
    let index = match find_token(&state.tokens, &ctx.headers) {
        Ok(Some(index)) => index,
        Ok(None) => return Ok(None),
        Err(()) => return Err(Denied::Unauthorized),
    };
    let entry = &mut state.tokens[index];
    if is_expired(entry, now) {
        return Err(Denied::Expired);
    }
    if entry.token.revoked {
        return Err(Denied::Revoked);
    }
    if let Scopes::Only(allowed) = scopes {
        let is_read = ctx.method == Method::GET || ctx.method == Method::HEAD;
        let ok =
            allowed.iter().filter(|s| is_read || !s.get_only).any(|s| entry.token.scopes.iter().any(|t| t == s.name));
        if !ok {
            // The error lists every registered scope, conditional ones included.
            let names: Vec<&str> = allowed.iter().map(|s| s.name).collect();
            return Err(Denied::Scope(names.join(" ")));
        }
    }
    entry.last_used_at = Some(now);
    if !entry.last_used_ips.contains(&ctx.peer) {
        entry.last_used_ips.push(ctx.peer);
        // GitLab keeps the five most recent addresses.
        if entry.last_used_ips.len() > 5 {
            entry.last_used_ips.remove(0);
        }
    }
    Ok(Some(entry.clone()))
}

/// Like [`authenticate_optional`], but a request without a token gets `401 Unauthorized`.
fn authenticate(shared: &Shared, ctx: &ReqCtx, scopes: Scopes) -> Result<TokenEntry, Denied> {
    authenticate_optional(shared, ctx, scopes)?.ok_or(Denied::Unauthorized)
}

/// Why a request was turned away; each maps to one of GitLab's answers below.
pub(crate) enum Denied {
    Unauthorized,
    Expired,
    Revoked,
    /// The space-separated scopes the endpoint accepts.
    Scope(String),
}

impl Denied {
    pub(crate) fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => unauthorized(),
            Denied::Expired => invalid_token("Token is expired. You can either do re-authorization or token refresh."),
            Denied::Revoked => invalid_token("Token was revoked. You have to re-authorize from the user."),
            Denied::Scope(scopes) => insufficient_scope(&scopes),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Error answers (lib/api/helpers.rb, lib/api/api_guard.rb with rack-oauth2's error classes)

pub(crate) fn unauthorized() -> Response {
    json_no_cache(StatusCode::UNAUTHORIZED, &serde_json::json!({"message": "401 Unauthorized"}))
}

fn invalid_token(description: &str) -> Response {
    let mut response = json_no_cache(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "invalid_token", "error_description": description}),
    );
    // rack-oauth2's Bearer::Unauthorized; GitLab creates it without a realm, hence the default.
    set_header(
        response.headers_mut(),
        "www-authenticate",
        &format!(
            "Bearer realm=\"Protected by OAuth 2.0\", error=\"invalid_token\", error_description=\"{description}\""
        ),
    );
    response
}

/// No `WWW-Authenticate` here: rack-oauth2's Forbidden does not set one (see the FIXME in
/// `api_guard.rb`).
fn insufficient_scope(scopes: &str) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'static str,
        error_description: &'static str,
        scope: &'a str,
    }
    json_no_cache(
        StatusCode::FORBIDDEN,
        &Body {
            error: "insufficient_scope",
            error_description: "The request requires higher privileges than provided by the access token.",
            scope: scopes,
        },
    )
}

fn bad_request(reason: &str) -> Response {
    json_no_cache(StatusCode::BAD_REQUEST, &serde_json::json!({"message": format!("400 Bad request - {reason}")}))
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = json_no_cache(StatusCode::METHOD_NOT_ALLOWED, &serde_json::json!({"error": "405 Not Allowed"}));
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    // Serialising these plain structs cannot fail; an empty body would show up in tests.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    with_body(status, "application/json", Body::from(bytes))
}

pub(crate) fn json_no_cache(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = json(status, body);
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(crate) fn ok_json(body: &impl Serialize) -> Response {
    let mut response = json(StatusCode::OK, body);
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=0, private, must-revalidate"));
    response
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[derive(Serialize)]
struct Kas {
    enabled: bool,
    #[serde(rename = "externalUrl")]
    external_url: Option<String>,
    #[serde(rename = "externalK8sProxyUrl")]
    external_k8s_proxy_url: Option<String>,
    version: Option<String>,
}

#[derive(Serialize)]
struct VersionJson<'a> {
    version: &'a str,
    revision: &'a str,
    kas: Kas,
    enterprise: bool,
}

/// `/version` runs the same GraphQL metadata query as `/metadata` (lib/api/metadata.rb).
fn version(shared: &Shared) -> Response {
    ok_json(&VersionJson {
        version: &shared.version,
        revision: &shared.revision,
        kas: Kas { enabled: false, external_url: None, external_k8s_proxy_url: None, version: None },
        enterprise: shared.version.ends_with("-ee"),
    })
}

pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

pub(crate) fn date(d: time::Date) -> String {
    d.format(format_description!("[year]-[month]-[day]")).unwrap_or_default()
}

fn hex64(seed: &str) -> String {
    (0..4u8).map(|i| format!("{:016x}", fnv1a(format!("{i}{seed}").as_bytes()))).collect()
}

#[derive(Serialize)]
struct AdminFields {
    current_sign_in_ip: String,
    last_sign_in_ip: String,
    namespace_id: u64,
    created_by: Option<()>,
    note: Option<String>,
}

/// `Entities::UserPublic`, or `UserWithAdmin` for administrators; example in doc/api/users.md.
#[derive(Serialize)]
struct UserJson<'a> {
    id: u64,
    username: &'a str,
    email: String,
    name: &'a str,
    state: &'static str,
    locked: bool,
    avatar_url: String,
    web_url: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_admin: Option<bool>,
    bio: &'static str,
    location: &'static str,
    public_email: Option<String>,
    skype: &'static str,
    linkedin: &'static str,
    twitter: &'static str,
    discord: &'static str,
    website_url: &'static str,
    organization: &'static str,
    job_title: &'static str,
    pronouns: Option<String>,
    bot: bool,
    work_information: Option<String>,
    followers: u64,
    following: u64,
    local_time: Option<String>,
    last_sign_in_at: Option<String>,
    confirmed_at: String,
    theme_id: u64,
    last_activity_on: String,
    color_scheme_id: u64,
    projects_limit: u64,
    current_sign_in_at: Option<String>,
    identities: Vec<()>,
    can_create_group: bool,
    can_create_project: bool,
    two_factor_enabled: bool,
    external: bool,
    private_profile: bool,
    commit_email: String,
    #[serde(flatten)]
    admin: Option<AdminFields>,
}

pub(crate) fn host_name(origin: &str) -> &str {
    let authority = origin.trim_start_matches("https://");
    if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        return &authority[..end + 2];
    }
    authority.split(':').next().unwrap_or(authority)
}

fn user_json<'a>(shared: &Shared, ctx: &ReqCtx, entry: &'a TokenEntry) -> UserJson<'a> {
    let user = &entry.token.user;
    let now = OffsetDateTime::now_utc();
    let created = shared.started - Duration::days(400);
    let signed_in = (!user.bot).then(|| timestamp(shared.started - Duration::hours(2)));
    // Bot users get a no-reply address on the instance host, like GitLab gives them.
    let email = if user.bot {
        format!("{}@noreply.{}", user.username, host_name(&ctx.origin))
    } else {
        format!("{}@example.com", user.username)
    };
    UserJson {
        id: user.id,
        username: &user.username,
        email: email.clone(),
        name: &user.name,
        state: "active",
        locked: false,
        avatar_url: format!("https://www.gravatar.com/avatar/{}?s=80&d=identicon", hex64(&user.username)),
        web_url: format!("{}{}/{}", ctx.origin, ctx.base_path, user.username),
        created_at: timestamp(created),
        is_admin: user.is_admin.then_some(true),
        bio: "",
        location: "",
        public_email: None,
        skype: "",
        linkedin: "",
        twitter: "",
        discord: "",
        website_url: "",
        organization: "",
        job_title: "",
        pronouns: None,
        bot: user.bot,
        work_information: None,
        followers: 0,
        following: 0,
        local_time: None,
        last_sign_in_at: signed_in.clone(),
        confirmed_at: timestamp(created),
        theme_id: 3,
        last_activity_on: date(now.date()),
        color_scheme_id: 1,
        projects_limit: if user.bot { 0 } else { 100_000 },
        current_sign_in_at: signed_in,
        identities: Vec::new(),
        can_create_group: !user.bot,
        can_create_project: !user.bot,
        two_factor_enabled: false,
        external: false,
        private_profile: false,
        commit_email: email,
        admin: user.is_admin.then(|| AdminFields {
            current_sign_in_ip: "127.0.0.1".into(),
            last_sign_in_ip: "127.0.0.1".into(),
            namespace_id: user.id,
            created_by: None,
            note: None,
        }),
    }
}

/// `Entities::PersonalAccessTokenWithLastUsedIps`.
#[derive(Serialize)]
struct PatJson<'a> {
    id: u64,
    name: String,
    revoked: bool,
    created_at: String,
    description: &'static str,
    scopes: &'a [String],
    user_id: u64,
    last_used_at: Option<String>,
    active: bool,
    expires_at: Option<String>,
    last_used_ips: Vec<String>,
}

fn pat_self(shared: &Shared, ctx: &ReqCtx) -> Response {
    let entry = match authenticate(shared, ctx, Scopes::Any) {
        Ok(entry) => entry,
        Err(denied) => return denied.into_response(),
    };
    // self_information.rb: `::Current.token_info[:token_type] == 'PersonalAccessToken'`, which
    // project, group and service-account tokens are too.
    if entry.token.kind == TokenKind::Oauth {
        return bad_request("This endpoint requires token type to be a personal access token");
    }
    if ctx.method == Method::DELETE {
        let mut state = shared.lock();
        if let Some(e) = state.tokens.iter_mut().find(|e| e.id == entry.id) {
            e.token.revoked = true;
        }
        let mut response = with_body(StatusCode::NO_CONTENT, "application/json", Body::empty());
        response.headers_mut().remove(axum::http::header::CONTENT_TYPE);
        return response;
    }
    let name = match entry.token.kind {
        TokenKind::Personal => "sim personal token",
        TokenKind::Project => "sim project token",
        TokenKind::Group => "sim group token",
        TokenKind::ServiceAccount => "sim service account token",
        TokenKind::Oauth => "sim oauth token",
    };
    let now = OffsetDateTime::now_utc();
    ok_json(&PatJson {
        id: entry.id,
        name: name.to_string(),
        revoked: entry.token.revoked,
        created_at: timestamp(shared.started - Duration::days(30)),
        description: "",
        scopes: &entry.token.scopes,
        user_id: entry.token.user.id,
        last_used_at: entry.last_used_at.map(timestamp),
        active: !entry.token.revoked && !is_expired(&entry, now),
        expires_at: entry.token.expires_at.map(date),
        last_used_ips: entry.last_used_ips.iter().map(|ip| ip.to_string()).collect(),
    })
}

/// GitLab's `Oauth::TokenInfoController`: Doorkeeper's `AccessToken#as_json` plus the deprecated
/// `scopes` and `expires_in_seconds` aliases.
#[derive(Serialize)]
struct TokenInfoJson<'a> {
    resource_owner_id: u64,
    scope: &'a [String],
    expires_in: Option<i64>,
    application: Application,
    created_at: i64,
    scopes: &'a [String],
    expires_in_seconds: Option<i64>,
}

#[derive(Serialize)]
struct Application {
    uid: String,
}

fn token_info(shared: &Shared, ctx: &ReqCtx) -> Response {
    let now = OffsetDateTime::now_utc();
    let found = {
        let state = shared.lock();
        bearer_token(&ctx.headers).and_then(|bearer| {
            state.tokens.iter().find(|e| e.token.kind == TokenKind::Oauth && e.token.token == bearer).cloned()
        })
    };
    // `doorkeeper_token.accessible?` is "neither expired nor revoked"; anything else, a personal
    // access token included, gets `InvalidTokenResponse.new`, whose reason is always "unknown".
    let Some(entry) = found.filter(|e| !e.token.revoked && !is_expired(e, now)) else {
        const DESCRIPTION: &str = "The access token is invalid";
        let mut response = with_body(
            StatusCode::UNAUTHORIZED,
            "application/json; charset=utf-8",
            Body::from(serde_json::json!({"error": "invalid_token", "error_description": DESCRIPTION}).to_string()),
        );
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        set_header(headers, "pragma", "no-cache");
        if let Ok(value) = HeaderValue::from_str(&format!(
            "Bearer realm=\"Doorkeeper\", error=\"invalid_token\", error_description=\"{DESCRIPTION}\""
        )) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        return response;
    };
    let expires_in = Some(oauth_expires_in(&entry, now));
    let body = TokenInfoJson {
        resource_owner_id: entry.token.user.id,
        scope: &entry.token.scopes,
        expires_in,
        application: Application { uid: hex64("gitlab-sim oauth application") },
        created_at: entry.created_at.unix_timestamp(),
        scopes: &entry.token.scopes,
        expires_in_seconds: expires_in,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = with_body(StatusCode::OK, "application/json; charset=utf-8", Body::from(bytes));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=0, private, must-revalidate"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SimToken, SimUser};

    fn entry(token: &str, kind: TokenKind) -> TokenEntry {
        TokenEntry {
            id: 1,
            token: SimToken {
                token: token.into(),
                kind,
                scopes: vec!["api".into()],
                expires_at: None,
                expired: false,
                revoked: false,
                user: SimUser { id: 1, username: "u".into(), name: "U".into(), bot: false, is_admin: false },
            },
            created_at: OffsetDateTime::now_utc(),
            last_used_at: None,
            last_used_ips: Vec::new(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn lookup_follows_gitlab_order() {
        let entries = vec![entry("pat", TokenKind::Personal), entry("oa", TokenKind::Oauth)];
        assert_eq!(find_token(&entries, &headers(&[])), Ok(None));
        assert_eq!(find_token(&entries, &headers(&[("private-token", "pat")])), Ok(Some(0)));
        assert_eq!(find_token(&entries, &headers(&[("authorization", "Bearer pat")])), Ok(Some(0)));
        assert_eq!(find_token(&entries, &headers(&[("authorization", "bearer oa")])), Ok(Some(1)));
        // OAuth tokens are not personal access tokens, so PRIVATE-TOKEN cannot carry them.
        assert_eq!(find_token(&entries, &headers(&[("private-token", "oa")])), Err(()));
        assert_eq!(find_token(&entries, &headers(&[("authorization", "Basic cGF0")])), Ok(None));
    }

    #[test]
    fn expiry_is_midnight_utc_on_the_date() {
        let now = OffsetDateTime::now_utc();
        let mut e = entry("pat", TokenKind::Personal);
        assert!(!is_expired(&e, now));
        e.token.expires_at = Some(now.date());
        assert!(is_expired(&e, now));
        e.token.expires_at = now.date().next_day();
        assert!(!is_expired(&e, now));
        let mut o = entry("oa", TokenKind::Oauth);
        assert!(!is_expired(&o, now));
        assert!((7199..=7200).contains(&oauth_expires_in(&o, now)));
        o.created_at = now - Duration::seconds(7200);
        assert!(is_expired(&o, now));
    }

    #[test]
    fn host_name_drops_port() {
        assert_eq!(host_name("https://127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_name("https://[::1]:8443"), "[::1]");
        assert_eq!(host_name("https://gitlab.test"), "gitlab.test");
    }
}

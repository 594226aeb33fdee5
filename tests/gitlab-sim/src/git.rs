//! Git smart HTTP, read only, as GitLab serves it: `/<project>.git/info/refs` and
//! `/<project>.git/git-upload-pack` with GitLab's Basic authentication and access checks, run by
//! `git http-backend` as a CGI. Pushes are refused. Sources are listed in FIXTURES.md.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::config::{SimProject, TokenKind};
use crate::server::{GITLAB_404_PAGE, ReqCtx, Shared, TokenEntry, html, percent_decode, with_body};

/// Which Git route a path is, with the project path (percent-decoded, without `.git`).
#[derive(Debug, PartialEq, Eq)]
enum Route {
    InfoRefs(String),
    UploadPack(String),
    ReceivePack(String),
    /// `/<project>/info/refs` without `.git`: GitLab redirects it (config/routes/git_http.rb).
    InfoRefsWithoutSuffix(String),
}

fn parse(rest: &str) -> Option<Route> {
    let (repo, make): (&str, fn(String) -> Route) = if let Some(repo) = rest.strip_suffix("/info/refs") {
        match repo.strip_suffix(".git") {
            Some(repo) => (repo, Route::InfoRefs),
            None => (repo, Route::InfoRefsWithoutSuffix),
        }
    } else if let Some(repo) = rest.strip_suffix(".git/git-upload-pack") {
        (repo, Route::UploadPack)
    } else if let Some(repo) = rest.strip_suffix(".git/git-receive-pack") {
        (repo, Route::ReceivePack)
    } else {
        return None;
    };
    let repo = percent_decode(repo.strip_prefix('/')?);
    // A project always sits in a namespace: `group/project`.
    let valid = repo.contains('/') && repo.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    valid.then(|| make(repo))
}

/// Whether the path (without the base path) is one of the Git smart HTTP routes.
pub(crate) fn is_git_path(rest: &str) -> bool {
    parse(rest).is_some()
}

/// `(login, password)` from `Authorization: Basic …`, as Rails' `user_name_and_password` reads it
/// (scheme case-insensitive, split at the first `:`; no `:` means no password).
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, param) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(param.trim()).unwrap_or_default();
    let text = String::from_utf8_lossy(&decoded).into_owned();
    Some(match text.split_once(':') {
        Some((login, password)) => (login.to_string(), Some(password.to_string())),
        None => (text, None),
    })
}

/// What a token may do over Git: `Gitlab::Auth.abilities_for_scopes` (lib/gitlab/auth.rb).
/// `api` gives full abilities, `read_api` the read-only ones (which include `download_code`),
/// `read_repository` downloads, `write_repository` downloads and pushes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Abilities {
    download: bool,
    push: bool,
}

fn abilities_for_scopes(scopes: &[String]) -> Abilities {
    scopes.iter().fold(Abilities::default(), |a, scope| match scope.as_str() {
        "api" | "write_repository" | "ai_workflows" => Abilities { download: true, push: true },
        "read_api" | "read_repository" => Abilities { download: true, ..a },
        _ => a,
    })
}

/// Since when GitLab takes OAuth tokens over Git HTTP with any login, not only `oauth2`
/// (merge request !152282, "No longer require magic username for Git over HTTPS with OAuth
/// token"; UNCONFIRMED milestone: the MR dates from May 2024, so 17.1 or 17.2; the later is used
/// so the simulator stays strict for both).
const OAUTH_ANY_LOGIN_SINCE: (u32, u32) = (17, 2);

fn version_at_least(version: &str, wanted: (u32, u32)) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= wanted
}

/// `Gitlab::Auth.find_for_git_client` for the credentials the simulator knows: an OAuth access
/// token, then a personal, project, group or service-account token. `None` is a failed login.
fn find_for_git_client(
    shared: &Shared,
    ctx: &ReqCtx,
    login: &str,
    password: Option<&str>,
    project: Option<&SimProject>,
) -> Option<(TokenEntry, Abilities)> {
    let password = password.filter(|p| !p.is_empty())?;
    let now = OffsetDateTime::now_utc();
    let mut state = shared.lock();
    let entry = state.tokens.iter_mut().find(|e| e.token.token == password)?;
    // Expired and revoked tokens are neither `accessible?` (OAuth) nor found by
    // `PersonalAccessTokensFinder.new(state: 'active')`.
    if entry.token.revoked || crate::api::is_expired(entry, now) {
        return None;
    }
    if entry.token.kind == TokenKind::Oauth {
        if !version_at_least(&shared.version, OAUTH_ANY_LOGIN_SINCE) && login != "oauth2" {
            return None;
        }
    } else {
        // `personal_access_token_check`: bots and service accounts only for projects they can read.
        let bot = entry.token.user.bot
            || matches!(entry.token.kind, TokenKind::Project | TokenKind::Group | TokenKind::ServiceAccount);
        if bot && project.is_some_and(|p| !p.readable_by(Some(&entry.token.user))) {
            return None;
        }
    }
    entry.last_used_at = Some(now);
    if !entry.last_used_ips.contains(&ctx.peer) {
        entry.last_used_ips.push(ctx.peer);
        if entry.last_used_ips.len() > 5 {
            entry.last_used_ips.remove(0);
        }
    }
    let abilities = abilities_for_scopes(&entry.token.scopes);
    Some((entry.clone(), abilities))
}

/// `GitHttpClientController#render_access_denied` plus `send_challenges` (Basic only).
fn access_denied(ctx: &ReqCtx) -> Response {
    let body = format!(
        "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was \
         incorrect or you're required to use a token instead of a password. If a token was provided, it was \
         either incorrect, expired, or improperly scoped. See {}{}/help/topics/git/troubleshooting_git.md\
         #error-on-git-fetch-http-basic-access-denied",
        ctx.origin, ctx.base_path
    );
    let mut response = plain(StatusCode::UNAUTHORIZED, body);
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"GitLab\""));
    response
}

fn plain(status: StatusCode, body: String) -> Response {
    with_body(status, "text/plain; charset=utf-8", Body::from(body))
}

/// `Gitlab::GitAccess::ERROR_MESSAGES` (lib/gitlab/git_access.rb).
mod message {
    pub(super) const AUTH_DOWNLOAD: &str = "You are not allowed to download code.";
    pub(super) const AUTH_UPLOAD: &str = "You are not allowed to upload code.";
    pub(super) const COMMAND_NOT_ALLOWED: &str = "The command you're trying to execute is not allowed.";
    pub(super) const READ_ONLY_INSTANCE: &str = "You can't push code to a read-only GitLab instance.";
    pub(super) const PROJECT_NOT_FOUND: &str =
        "The project you were looking for could not be found or you don't have permission to view it.";
    pub(super) const NO_REPO: &str = "A repository for this project does not exist yet.";
}

fn find_project(shared: &Shared, path: &str) -> Option<SimProject> {
    // Project routes match full paths case-insensitively, as `Project.find_by_full_path` does.
    shared.projects().items.iter().find(|p| p.path_with_namespace.eq_ignore_ascii_case(path)).cloned()
}

/// Serves a Git route: routing and method checks, authentication, GitLab's access checks in
/// their order, then `git http-backend`.
pub(crate) async fn serve(shared: &Shared, ctx: &ReqCtx) -> Response {
    let Some(route) = parse(&ctx.rest) else { return html(StatusCode::NOT_FOUND, GITLAB_404_PAGE) };
    let (path, command, path_info) = match (&route, &ctx.method) {
        (Route::InfoRefsWithoutSuffix(path), &Method::GET) => return redirect_to_git_suffix(shared, ctx, path),
        // `deny_head_requests` runs before authentication.
        (Route::InfoRefs(_), &Method::HEAD) => return with_body(StatusCode::FORBIDDEN, "text/html", Body::empty()),
        (Route::InfoRefs(path), &Method::GET) => {
            let service = ctx.query.split('&').find_map(|p| p.strip_prefix("service=")).map(percent_decode);
            (path, service, "/info/refs")
        }
        (Route::UploadPack(path), &Method::POST) => (path, Some("git-upload-pack".into()), "/git-upload-pack"),
        (Route::ReceivePack(path), &Method::POST) => (path, Some("git-receive-pack".into()), "/git-receive-pack"),
        _ => return html(StatusCode::NOT_FOUND, GITLAB_404_PAGE),
    };
    let project = find_project(shared, path);
    let download = command.as_deref() == Some("git-upload-pack");
    let push = command.as_deref() == Some("git-receive-pack");

    // GitHttpClientController#authenticate_user: Basic credentials, or anonymous downloads of
    // projects anyone may read. PRIVATE-TOKEN and Bearer headers are not looked at.
    let (user, abilities) = match basic_credentials(&ctx.headers) {
        Some((login, password)) => {
            match find_for_git_client(shared, ctx, &login, password.as_deref(), project.as_ref()) {
                Some((entry, abilities)) => (Some(entry), abilities),
                None => return access_denied(ctx),
            }
        }
        None if download && project.as_ref().is_some_and(|p| p.readable_by(None)) => {
            (None, Abilities { download: true, push: false })
        }
        None => return access_denied(ctx),
    };

    // Gitlab::GitAccess#check.
    if download && !abilities.download {
        return plain(StatusCode::FORBIDDEN, message::AUTH_DOWNLOAD.into());
    }
    if push && !abilities.push {
        return plain(StatusCode::FORBIDDEN, message::AUTH_UPLOAD.into());
    }
    if !download && !push {
        return plain(StatusCode::FORBIDDEN, message::COMMAND_NOT_ALLOWED.into());
    }
    if push {
        // `check_db_accessibility!`: the simulator is a read-only instance.
        return plain(StatusCode::FORBIDDEN, message::READ_ONLY_INSTANCE.into());
    }
    let user_ref = user.as_ref().map(|e| &e.token.user);
    let Some(project) = project.filter(|p| p.readable_by(user_ref)) else {
        return plain(StatusCode::NOT_FOUND, message::PROJECT_NOT_FOUND.into());
    };
    let Some(repo) = project.repo.as_deref().filter(|r| r.join("HEAD").is_file()) else {
        return plain(StatusCode::NOT_FOUND, message::NO_REPO.into());
    };

    let remote_user = user.as_ref().map(|e| e.token.user.username.as_str());
    let env = cgi_env(ctx, repo, path_info, remote_user);
    match run_backend(Arc::clone(&shared.git_bytes_sent), env, ctx.body.clone()).await {
        Ok(response) => response,
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("git http-backend failed: {e}")),
    }
}

/// `/<project>/info/refs` → 301 to `/<project>.git/info/refs`, only for the handshake query
/// strings GitLab's route constraint accepts and for existing projects.
fn redirect_to_git_suffix(shared: &Shared, ctx: &ReqCtx, path: &str) -> Response {
    let handshake =
        ctx.query.is_empty() || ctx.query == "service=git-upload-pack" || ctx.query == "service=git-receive-pack";
    if !handshake || find_project(shared, path).is_none() {
        return html(StatusCode::NOT_FOUND, GITLAB_404_PAGE);
    }
    let query = if ctx.query.is_empty() { String::new() } else { format!("?{}", ctx.query) };
    let location = format!("{}{}/{path}.git/info/refs{query}", ctx.origin, ctx.base_path);
    let mut response = html(StatusCode::MOVED_PERMANENTLY, "");
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Config for the backend, as Gitaly runs upload-pack (`uploadpack.allowFilter`,
/// `uploadpack.allowAnySHA1InWant`, `pack.windowMemory`), with pushes off and no ownership check.
const BACKEND_CONFIG: [(&str, &str); 5] = [
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("pack.windowMemory", "100m"),
    ("http.receivepack", "false"),
    ("safe.directory", "*"),
];

/// A HOME that does not exist: nothing from a user's configuration can leak in.
pub(crate) const PRIVATE_HOME: &str = "/nonexistent/gitlab-sim-home";

/// The CGI environment for `git http-backend` (everything else is cleared).
fn cgi_env(ctx: &ReqCtx, repo: &Path, path_info: &str, remote_user: Option<&str>) -> HashMap<String, String> {
    let header = |name: &str| ctx.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut env = HashMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
    set("HOME", PRIVATE_HOME.into());
    set("GIT_CONFIG_NOSYSTEM", "1".into());
    set("GIT_CONFIG_GLOBAL", "/dev/null".into());
    set("GIT_PROJECT_ROOT", repo.to_string_lossy().into_owned());
    set("GIT_HTTP_EXPORT_ALL", "1".into());
    // http-backend's own cap on request bodies (10 MB by default) follows the simulator's.
    set("GIT_HTTP_MAX_REQUEST_BUFFER", crate::server::MAX_GIT_REQUEST_BODY.to_string());
    set("REQUEST_METHOD", ctx.method.to_string());
    set("PATH_INFO", path_info.into());
    set("QUERY_STRING", ctx.query.clone());
    set("REMOTE_ADDR", ctx.peer.to_string());
    if ctx.method == Method::POST {
        set("CONTENT_LENGTH", ctx.body.len().to_string());
    }
    if let Some(v) = header("content-type") {
        set("CONTENT_TYPE", v);
    }
    // Git gzips large request bodies; http-backend inflates them.
    if let Some(v) = header("content-encoding") {
        set("HTTP_CONTENT_ENCODING", v);
    }
    // `Git-Protocol: version=2` is what switches upload-pack to protocol v2.
    if let Some(v) = header("git-protocol") {
        set("GIT_PROTOCOL", v.clone());
        set("HTTP_GIT_PROTOCOL", v);
    }
    if let Some(user) = remote_user {
        set("REMOTE_USER", user.into());
    }
    set("GIT_CONFIG_COUNT", BACKEND_CONFIG.len().to_string());
    for (i, (key, value)) in BACKEND_CONFIG.iter().enumerate() {
        set(&format!("GIT_CONFIG_KEY_{i}"), (*key).into());
        set(&format!("GIT_CONFIG_VALUE_{i}"), (*value).into());
    }
    env
}

/// Largest CGI header block accepted from the backend.
const MAX_CGI_HEADERS: usize = 64 * 1024;
/// How much of the backend's stderr is kept for an error answer.
const MAX_STDERR: usize = 16 * 1024;

/// Runs `git http-backend` with `body` on stdin; the CGI headers become the response's status
/// and headers, and stdout after them is streamed as the body (no size limit) and counted in
/// `git_bytes_sent`. The child is always waited for, and killed when the client goes away.
async fn run_backend(
    sent_counter: Arc<AtomicU64>,
    env: HashMap<String, String>,
    body: Bytes,
) -> std::io::Result<Response> {
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("child pipes missing"));
    };
    // Feeding stdin while stdout is read keeps a full pipe from blocking either side.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let errors = tokio::spawn(read_bounded(stderr, MAX_STDERR));

    let mut buf = Vec::with_capacity(8 * 1024);
    let header_end = loop {
        if let Some(end) = find_header_end(&buf) {
            break Some(end);
        }
        if buf.len() > MAX_CGI_HEADERS {
            break None;
        }
        let mut chunk = [0u8; 8 * 1024];
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            break None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let Some((headers_len, body_start)) = header_end else {
        let _ = child.kill().await;
        let _ = writer.await;
        let stderr = errors.await.unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "no CGI headers; stderr: {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    };
    let mut response = cgi_response(&buf[..headers_len]);
    let first = Bytes::copy_from_slice(&buf[body_start..]);

    let (mut tx, channel) = http_body_util::channel::Channel::<Bytes>::new(4);
    tokio::spawn(async move {
        let sent = stream_body(&sent_counter, &mut tx, first, &mut stdout).await;
        if !sent {
            // The client went away: stop the backend rather than let it write into nothing.
            let _ = child.kill().await;
        }
        drop(tx);
        let _ = writer.await;
        let _ = errors.await;
        reap(child).await;
    });
    *response.body_mut() = Body::new(channel);
    Ok(response)
}

/// Sends `first` and then stdout until EOF; `false` when the receiver was dropped.
async fn stream_body(
    sent_counter: &AtomicU64,
    tx: &mut http_body_util::channel::Sender<Bytes>,
    first: Bytes,
    stdout: &mut (impl AsyncRead + Unpin),
) -> bool {
    let count = |n: usize| sent_counter.fetch_add(n as u64, Ordering::Relaxed);
    if !first.is_empty() {
        let n = first.len();
        if tx.send_data(first).await.is_err() {
            return false;
        }
        count(n);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => n,
        };
        if tx.send_data(Bytes::copy_from_slice(&chunk[..n])).await.is_err() {
            return false;
        }
        count(n);
    }
}

async fn reap(mut child: Child) {
    let _ = child.wait().await;
}

async fn read_bounded(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 4096];
    // Keep draining past the limit so the child never blocks on a full stderr pipe.
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
    kept
}

/// `(length of the header block, start of the body)`: CGI headers end at an empty line, which
/// http-backend writes as `\r\n`; a bare `\n` is accepted too.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The response for a CGI header block: `Status: 404 Not Found` sets the status (200 without
/// one), every other valid header is passed on.
fn cgi_response(block: &[u8]) -> Response {
    let mut response = Response::new(Body::empty());
    for line in String::from_utf8_lossy(block).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse::<u16>().ok());
            if let Some(status) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
                *response.status_mut() = status;
            }
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    if !response.headers().contains_key(CONTENT_TYPE) {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_recognised() {
        assert_eq!(parse("/demo/backend.git/info/refs"), Some(Route::InfoRefs("demo/backend".into())));
        assert_eq!(parse("/a/b/c.git/git-upload-pack"), Some(Route::UploadPack("a/b/c".into())));
        assert_eq!(parse("/a/b.git/git-receive-pack"), Some(Route::ReceivePack("a/b".into())));
        assert_eq!(parse("/a/b/info/refs"), Some(Route::InfoRefsWithoutSuffix("a/b".into())));
        assert_eq!(parse("/b.git/info/refs"), None);
        assert_eq!(parse("/a/../b.git/info/refs"), None);
        assert_eq!(parse("/a//b.git/info/refs"), None);
        assert_eq!(parse("/a/b/git-upload-pack"), None);
        assert_eq!(parse("/api/v4/projects"), None);
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Basic b2F1dGgyOnRvazp4"));
        assert_eq!(basic_credentials(&headers), Some(("oauth2".into(), Some("tok:x".into()))));
        headers.insert("authorization", HeaderValue::from_static("basic dXNlcg=="));
        assert_eq!(basic_credentials(&headers), Some(("user".into(), None)));
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn scopes_map_to_gitlabs_abilities() {
        let of = |scopes: &[&str]| abilities_for_scopes(&scopes.iter().map(|s| (*s).to_string()).collect::<Vec<_>>());
        assert_eq!(of(&["api"]), Abilities { download: true, push: true });
        assert_eq!(of(&["read_api"]), Abilities { download: true, push: false });
        assert_eq!(of(&["read_repository"]), Abilities { download: true, push: false });
        assert_eq!(of(&["write_repository"]), Abilities { download: true, push: true });
        assert_eq!(of(&["read_user", "read_registry"]), Abilities::default());
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(version_at_least("17.8.1-ee", (17, 2)));
        assert!(version_at_least("18.0.0", (17, 2)));
        assert!(!version_at_least("17.1.3-ee", (17, 2)));
        assert!(!version_at_least("16.11.0", (17, 2)));
    }

    #[test]
    fn cgi_headers_give_status_and_headers() {
        let block = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nPragma: no-cache";
        let response = cgi_response(block);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.headers()["pragma"], "no-cache");
        assert_eq!(find_header_end(b"A: b\r\n\r\nbody"), Some((4, 8)));
        assert_eq!(find_header_end(b"A: b\n\nbody"), Some((4, 6)));
        assert_eq!(find_header_end(b"A: b\r\n"), None);
    }
}

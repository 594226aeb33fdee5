//! The HTTPS listener: records every request, applies the misbehaviour mode, then hands GitLab
//! routes to `api`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::api;
use crate::config::{Behaviour, ListingMode, RateLimit, SimConfig, SimProject, SimToken};
use crate::faults::{Faults, Limiter};

/// How a request presented its token. The token itself is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSeen {
    None,
    /// A `PRIVATE-TOKEN` header (reported even when a Bearer header came too).
    PrivateToken,
    /// `Authorization: Bearer …`.
    Bearer,
    /// `Authorization: Basic …` (Git over HTTP).
    Basic,
}

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The full path, base path included.
    pub path: String,
    /// The raw query string without `?`, empty when there was none. The values of
    /// `private_token`, `access_token` and `job_token` are replaced by `[FILTERED]`.
    pub query: String,
    pub auth: AuthSeen,
    /// The `Git-Protocol` header (`version=2` for protocol v2), when one came.
    pub git_protocol: Option<String>,
}

impl RecordedRequest {
    /// The last value of a query parameter, percent-decoded (`+` as a space).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query
            .rsplit('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| percent_decode(k) == name)
            .map(|(_, v)| percent_decode(v))
    }

    /// Whether the path, without the base path, is `path` (for example `/api/v4/projects`).
    pub fn is_to(&self, path: &str) -> bool {
        self.path.ends_with(path)
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are.
pub(crate) fn percent_decode(raw: &str) -> String {
    if !raw.contains(['%', '+']) {
        return raw.to_string();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query with token values hidden, as GitLab's own logs filter them.
fn redact_query(query: &str) -> String {
    if !query.contains("token") {
        return query.to_string();
    }
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if matches!(percent_decode(k).as_str(), "private_token" | "access_token" | "job_token") => {
                format!("{k}=[FILTERED]")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A started simulator. Dropping it stops the server too; [`RunningSim::shutdown`] also waits.
pub struct RunningSim {
    pub addr: SocketAddr,
    /// The generated CA certificate (PEM) that signed the server certificate.
    pub ca_pem: String,
    shared: Arc<Shared>,
    handle: Handle<SocketAddr>,
    task: Option<JoinHandle<io::Result<()>>>,
}

pub(crate) struct Shared {
    pub(crate) base_path: String,
    pub(crate) version: String,
    pub(crate) revision: String,
    pub(crate) projects: RwLock<ProjectStore>,
    pub(crate) empty_repo_default_branch: Option<String>,
    pub(crate) offset_pagination_limit: u64,
    pub(crate) started: OffsetDateTime,
    state: Mutex<SimState>,
    hooks: Mutex<crate::hooks::Hooks>,
    mrs: Mutex<crate::merge_requests::MrStore>,
    statuses: Mutex<crate::statuses::StatusStore>,
    vulnerabilities: Mutex<crate::graphql::VulnerabilityStore>,
    request_ids: AtomicU64,
    /// Response body bytes handed to clients on Git smart HTTP routes.
    pub(crate) git_bytes_sent: Arc<AtomicU64>,
}

/// The projects, sorted by id, so that id ranges and offsets are a binary search away.
pub(crate) struct ProjectStore {
    pub(crate) items: Vec<SimProject>,
    /// Whether `created_at` never decreases with the id, so `order_by=created_at` can use id
    /// order without sorting.
    pub(crate) created_follows_id: bool,
    /// Whether some project has an explicit member list (listings then check each project).
    pub(crate) has_members: bool,
}

impl ProjectStore {
    fn new(mut items: Vec<SimProject>) -> Self {
        items.sort_by_key(|p| p.id);
        items.dedup_by_key(|p| p.id);
        let mut store = ProjectStore { items, created_follows_id: true, has_members: false };
        store.refresh();
        store
    }

    fn refresh(&mut self) {
        self.created_follows_id = self.items.windows(2).all(|w| w[0].created_at <= w[1].created_at);
        self.has_members = self.items.iter().any(|p| p.members.is_some());
    }

    pub(crate) fn index_of(&self, id: u64) -> Option<usize> {
        self.items.binary_search_by_key(&id, |p| p.id).ok()
    }

    pub(crate) fn get(&self, id: u64) -> Option<&SimProject> {
        self.index_of(id).map(|i| &self.items[i])
    }
}

pub(crate) struct SimState {
    pub(crate) behaviour: Behaviour,
    pub(crate) tokens: Vec<TokenEntry>,
    requests: Vec<RecordedRequest>,
    next_token_id: u64,
    latency: Duration,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) limiter: Limiter,
    pub(crate) listing_mode: ListingMode,
    faults: Faults,
    /// Token string → project pages still answered before the token is revoked.
    pub(crate) revoke_after_pages: HashMap<String, u64>,
}

/// A token plus what the server tracks about it at run time.
#[derive(Clone)]
pub(crate) struct TokenEntry {
    pub(crate) id: u64,
    pub(crate) token: SimToken,
    /// When the simulator learnt the token; OAuth lifetimes count from here.
    pub(crate) created_at: OffsetDateTime,
    pub(crate) last_used_at: Option<OffsetDateTime>,
    pub(crate) last_used_ips: Vec<IpAddr>,
}

impl SimState {
    fn upsert(&mut self, token: SimToken, now: OffsetDateTime) {
        if let Some(entry) = self.tokens.iter_mut().find(|e| e.token.token == token.token) {
            entry.token = token;
            return;
        }
        self.next_token_id += 1;
        self.tokens.push(TokenEntry {
            id: self.next_token_id,
            token,
            created_at: now,
            last_used_at: None,
            last_used_ips: Vec::new(),
        });
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic elsewhere must not turn every later request into a second panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn hooks(&self) -> MutexGuard<'_, crate::hooks::Hooks> {
        self.hooks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn mrs(&self) -> MutexGuard<'_, crate::merge_requests::MrStore> {
        self.mrs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn statuses(&self) -> MutexGuard<'_, crate::statuses::StatusStore> {
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn vulnerabilities(&self) -> MutexGuard<'_, crate::graphql::VulnerabilityStore> {
        self.vulnerabilities.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn projects(&self) -> RwLockReadGuard<'_, ProjectStore> {
        self.projects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn projects_mut(&self) -> RwLockWriteGuard<'_, ProjectStore> {
        self.projects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the simulator on `bind` (for example `127.0.0.1:0`) and returns once it is listening.
pub async fn start(config: SimConfig, bind: SocketAddr) -> io::Result<RunningSim> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let generated = crate::tls::generate(&config.cert_names)?;

    let started = OffsetDateTime::now_utc();
    let mut state = SimState {
        behaviour: config.behaviour,
        tokens: Vec::new(),
        requests: Vec::new(),
        next_token_id: 1000,
        latency: config.latency,
        rate_limit: config.rate_limit,
        limiter: Limiter::default(),
        listing_mode: config.listing_mode,
        faults: Faults::default(),
        revoke_after_pages: HashMap::new(),
    };
    for token in config.tokens {
        state.upsert(token, started);
    }
    let shared = Arc::new(Shared {
        base_path: normalise_base_path(&config.base_path),
        revision: revision_for(&config.version),
        version: config.version,
        projects: RwLock::new(ProjectStore::new(config.projects)),
        empty_repo_default_branch: config.empty_repo_default_branch,
        offset_pagination_limit: config.offset_pagination_limit,
        started,
        state: Mutex::new(state),
        hooks: Mutex::new(crate::hooks::Hooks::default()),
        mrs: Mutex::new(crate::merge_requests::MrStore::default()),
        statuses: Mutex::new(crate::statuses::StatusStore::default()),
        vulnerabilities: Mutex::new(crate::graphql::VulnerabilityStore::default()),
        request_ids: AtomicU64::new(0),
        git_bytes_sent: Arc::new(AtomicU64::new(0)),
    });

    let listener = std::net::TcpListener::bind(bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = Handle::new();
    let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(generated.server_config))?
        .handle(handle.clone());
    let app = Router::new().fallback(handle_request).with_state(Arc::clone(&shared));
    let task = tokio::spawn(async move { server.serve(app.into_make_service_with_connect_info::<SocketAddr>()).await });

    Ok(RunningSim { addr, ca_pem: generated.ca_pem, shared, handle, task: Some(task) })
}

impl RunningSim {
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Raises `event` on a project: every subscribed, enabled hook receives GitLab's delivery
    /// (headers, payload, signature), and failures count toward auto-disabling as in GitLab.
    pub async fn deliver(&self, project_id: u64, event: &crate::hooks::SimEvent) -> Vec<crate::hooks::Delivered> {
        crate::hooks::deliver(&self.shared, project_id, event, &format!("https://{}", self.addr)).await
    }

    /// Ends every temporary disabling now, as if its back-off had passed.
    pub fn expire_hook_backoff(&self) {
        self.shared.hooks().expire_backoff();
    }

    /// The project hooks as the simulator keeps them (tokens included, unlike the API).
    pub fn hooks(&self) -> Vec<crate::hooks::SimHook> {
        self.shared.hooks().all()
    }

    /// `https://127.0.0.1:<port><base_path>` (the bound address when it is not a wildcard).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        self.base_url_for(&ip.to_string())
    }

    /// The base URL with another host name, for example one in `cert_names`.
    pub fn base_url_for(&self, host: &str) -> String {
        let host = match host.parse::<Ipv6Addr>() {
            Ok(_) => format!("[{host}]"),
            Err(_) => host.to_string(),
        };
        format!("https://{host}:{}{}", self.addr.port(), self.shared.base_path)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.lock().behaviour = behaviour;
    }

    /// Adds a token or replaces the one with the same token string (to revoke it, say).
    pub fn upsert_token(&self, token: SimToken) {
        self.shared.lock().upsert(token, OffsetDateTime::now_utc());
    }

    /// The recorded requests whose path, without the base path, is `path` (for example
    /// `/api/v4/projects`), oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        let full = format!("{}{path}", self.shared.base_path);
        self.shared.lock().requests.iter().filter(|r| r.path == full).cloned().collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Delay before every `/api/...` answer from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Replaces the `GET /projects` budget (`None`: unlimited) and starts counting afresh.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut state = self.shared.lock();
        state.rate_limit = limit;
        state.limiter.reset();
    }

    /// Starts a new rate-limit window now, as if the old one had run out.
    pub fn reset_rate_limit(&self) {
        self.shared.lock().limiter.reset();
    }

    /// The next `n` requests to `/api/...` fail with `status` (502 and 503/504 as nginx pages,
    /// 429 as a bare throttle, others as GitLab's JSON error); then answers are normal again.
    /// Calls queue up.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.lock().faults.fail_next(n, status);
    }

    /// Each `/api/...` request fails with `status` with probability `rate` (0.0 to 1.0), drawn
    /// from a fixed-seed generator. 0.0 turns it off.
    pub fn set_failure_rate(&self, rate: f64, status: u16) {
        self.shared.lock().faults.set_rate(rate, status);
    }

    /// Drops queued failures and the failure rate.
    pub fn clear_failures(&self) {
        self.shared.lock().faults.clear();
    }

    /// The token is revoked once `pages` successful `GET /projects` pages have been answered to
    /// it; later requests get GitLab's 401 "Token was revoked". `pages == 0` revokes it now.
    pub fn revoke_token_after_project_pages(&self, token: &str, pages: u64) {
        let mut state = self.shared.lock();
        if pages == 0 {
            if let Some(entry) = state.tokens.iter_mut().find(|e| e.token.token == token) {
                entry.token.revoked = true;
            }
            state.revoke_after_pages.remove(token);
        } else {
            state.revoke_after_pages.insert(token.to_string(), pages);
        }
    }

    /// How `GET /projects` misbehaves from now on.
    pub fn set_listing_mode(&self, mode: ListingMode) {
        self.shared.lock().listing_mode = mode;
    }

    /// The project with this id, as it is now.
    pub fn project(&self, id: u64) -> Option<SimProject> {
        self.shared.projects().get(id).cloned()
    }

    /// How many projects there are now.
    pub fn project_count(&self) -> usize {
        self.shared.projects().items.len()
    }

    /// All projects, sorted by id.
    pub fn projects(&self) -> Vec<SimProject> {
        self.shared.projects().items.clone()
    }

    /// Changes a project in place; `false` when there is none with this id. The id itself
    /// cannot change.
    pub fn update_project(&self, id: u64, change: impl FnOnce(&mut SimProject)) -> bool {
        let mut store = self.shared.projects_mut();
        let Some(index) = store.index_of(id) else { return false };
        change(&mut store.items[index]);
        store.items[index].id = id;
        store.refresh();
        true
    }

    /// Renames the project's path (the last segment of `path_with_namespace`) and its name, as
    /// `PUT /projects/:id` with `path` and `name` does; `updated_at` becomes now.
    pub fn rename_project(&self, id: u64, new_path: &str) -> bool {
        self.update_project(id, |p| {
            let namespace = p.namespace_path().to_string();
            p.path_with_namespace =
                if namespace.is_empty() { new_path.to_string() } else { format!("{namespace}/{new_path}") };
            p.name = None;
            p.updated_at = OffsetDateTime::now_utc();
        })
    }

    /// Moves the project to another namespace (`group/subgroup`), keeping its path;
    /// `updated_at` becomes now.
    pub fn transfer_project(&self, id: u64, namespace: &str) -> bool {
        self.update_project(id, |p| {
            let path = p.path().to_string();
            p.path_with_namespace = format!("{}/{path}", namespace.trim_matches('/'));
            p.updated_at = OffsetDateTime::now_utc();
        })
    }

    /// Sets `last_activity_at` and `updated_at` (as a push would).
    pub fn touch_project(&self, id: u64, at: OffsetDateTime) -> bool {
        self.update_project(id, |p| {
            p.last_activity_at = at;
            p.updated_at = at;
        })
    }

    /// Deletes a project; `false` when there was none.
    pub fn delete_project(&self, id: u64) -> bool {
        let mut store = self.shared.projects_mut();
        let Some(index) = store.index_of(id) else { return false };
        store.items.remove(index);
        store.refresh();
        true
    }

    /// Serves `repo` (a bare repository directory) as the project's repository over Git smart
    /// HTTP; `None` detaches it. `false` when there is no project with this id.
    pub fn set_repository(&self, project_id: u64, repo: Option<std::path::PathBuf>) -> bool {
        self.update_project(project_id, |p| p.repo = repo)
    }

    /// Response body bytes sent so far on Git smart HTTP routes (`info/refs`,
    /// `git-upload-pack`), for comparing what fetches transfer.
    pub fn git_bytes_sent(&self) -> u64 {
        self.shared.git_bytes_sent.load(Ordering::Relaxed)
    }

    /// Adds projects (replacing any with the same id) in one sort, cheap even for thousands.
    pub fn add_projects(&self, projects: Vec<SimProject>) {
        let mut store = self.shared.projects_mut();
        let mut items = std::mem::take(&mut store.items);
        // New ones first so that a stable sort plus dedup keeps them over old ones.
        let mut all = projects;
        all.append(&mut items);
        *store = ProjectStore::new(all);
    }

    /// Stops the server, cutting open connections, and waits for it to finish.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.handle.shutdown();
            task.abort();
        }
    }
}

impl fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSim")
            .field("addr", &self.addr)
            .field("base_path", &self.shared.base_path)
            .finish_non_exhaustive()
    }
}

fn normalise_base_path(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") }
}

/// A stable fake commit id, so one version always reports the same revision.
fn revision_for(version: &str) -> String {
    format!("{:016x}", fnv1a(version.as_bytes()))[..11].to_string()
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Largest request body the simulator reads (hook settings are small).
const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Largest body of a Git request (`git-upload-pack` negotiation with many `have` lines).
/// Responses have no limit.
pub(crate) const MAX_GIT_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// What the route handlers need to know about the request.
pub(crate) struct ReqCtx {
    pub(crate) method: axum::http::Method,
    /// Path with the base path removed; starts with `/` or is empty.
    pub(crate) rest: String,
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) peer: IpAddr,
    /// The request body (at most [`MAX_REQUEST_BODY`]).
    pub(crate) body: bytes::Bytes,
    /// `https://host[:port]` as the client addressed us.
    pub(crate) origin: String,
    pub(crate) base_path: String,
}

async fn handle_request(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&shared);
    let (parts, body) = req.into_parts();
    let limit = match strip_base(parts.uri.path(), &shared.base_path) {
        Some(rest) if crate::git::is_git_path(rest) => MAX_GIT_REQUEST_BODY,
        _ => MAX_REQUEST_BODY,
    };
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return with_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "application/json",
            r#"{"message":"413 Request Entity Too Large"}"#.into(),
        );
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();

    let behaviour = {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query: redact_query(&query),
            auth: auth_seen(&parts.headers),
            git_protocol: parts.headers.get("git-protocol").and_then(|v| v.to_str().ok()).map(str::to_string),
        });
        state.behaviour.clone()
    };

    let rest = match strip_base(&path, &shared.base_path) {
        Some(rest) => rest.to_string(),
        None => return nginx_not_found(),
    };
    let is_api = rest == "/api" || rest.starts_with("/api/");

    match behaviour {
        Behaviour::Normal => {}
        Behaviour::SlowHeaders(delay) => tokio::time::sleep(delay).await,
        Behaviour::EndlessBody => return endless_body(),
        Behaviour::HugeBody(size) => return huge_body(size),
        Behaviour::Redirect(location) => return redirect(&location),
        Behaviour::Html => return html(StatusCode::OK, SIGN_IN_PAGE),
        Behaviour::NotFound => return nginx_not_found(),
    }

    if is_api {
        let (latency, fault) = {
            let mut state = shared.lock();
            (state.latency, state.faults.take())
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(status) = fault {
            let mut response = crate::faults::fault_response(status);
            add_gitlab_headers(&mut response, &request_id, started);
            return response;
        }
    }

    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    let ctx = ReqCtx {
        method: parts.method,
        rest,
        query,
        headers: parts.headers,
        peer: peer.ip(),
        body,
        origin: format!("https://{host}"),
        base_path: shared.base_path.clone(),
    };
    let mut response = api::dispatch(&shared, &ctx).await;
    add_gitlab_headers(&mut response, &request_id, started);
    response
}

/// `None` when the path lies outside the base path.
fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    if base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn auth_seen(headers: &HeaderMap) -> AuthSeen {
    if headers.contains_key("private-token") {
        AuthSeen::PrivateToken
    } else if api::bearer_token(headers).is_some() {
        AuthSeen::Bearer
    } else if crate::git::basic_credentials(headers).is_some() {
        AuthSeen::Basic
    } else {
        AuthSeen::None
    }
}

/// A ULID-shaped id like the ones GitLab puts in `X-Request-Id`.
fn request_id(shared: &Shared) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    let mixed = splitmix64(n ^ (millis as u64).rotate_left(17));
    let value: u128 = (millis << 80) | (u128::from(mixed) << 16) | u128::from(n as u16);
    (0..26).rev().map(|i| char::from(ALPHABET[((value >> (i * 5)) & 31) as usize])).collect()
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn add_gitlab_headers(response: &mut Response, request_id: &str, started: Instant) {
    let headers = response.headers_mut();
    set_header(headers, "x-request-id", request_id);
    set_header(headers, "x-gitlab-meta", &format!(r#"{{"correlation_id":"{request_id}","version":"1"}}"#));
    set_header(headers, "x-runtime", &format!("{:.6}", started.elapsed().as_secs_f64()));
    set_header(headers, "x-content-type-options", "nosniff");
    set_header(headers, "x-frame-options", "SAMEORIGIN");
    set_header(headers, "referrer-policy", "strict-origin-when-cross-origin");
    set_header(headers, "server", "nginx");
}

pub(crate) fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

pub(crate) fn with_body(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn html(status: StatusCode, page: &'static str) -> Response {
    with_body(status, "text/html; charset=utf-8", Body::from(page))
}

pub(crate) fn redirect(location: &str) -> Response {
    let body = format!(
        "<html><body>You are being <a href=\"{}\">redirected</a>.</body></html>",
        location.replace('"', "&quot;")
    );
    let mut response = with_body(StatusCode::FOUND, "text/html; charset=utf-8", body.into());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn nginx_not_found() -> Response {
    let mut response = with_body(StatusCode::NOT_FOUND, "text/html", Body::from(NGINX_404));
    set_header(response.headers_mut(), "server", "nginx");
    response
}

/// Valid-looking JSON that never finishes, to test body-size and time limits.
fn endless_body() -> Response {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    tokio::spawn(async move {
        if tx.send_data(Bytes::from_static(b"{\"version\":\"")).await.is_err() {
            return;
        }
        let chunk = Bytes::from(vec![b'9'; 16 * 1024]);
        // Ends when the client goes away: the body, and with it the receiver, is dropped.
        while tx.send_data(chunk.clone()).await.is_ok() {}
    });
    with_body(StatusCode::OK, "application/json", Body::new(body))
}

/// Exactly `size` bytes; a JSON object when there is room for one.
fn huge_body(size: usize) -> Response {
    const HEAD: &[u8] = b"{\"version\":\"";
    const TAIL: &[u8] = b"\"}";
    let mut body = Vec::with_capacity(size);
    if size >= HEAD.len() + TAIL.len() {
        body.extend_from_slice(HEAD);
        body.resize(size - TAIL.len(), b'9');
        body.extend_from_slice(TAIL);
    } else {
        body.resize(size, b' ');
    }
    with_body(StatusCode::OK, "application/json", Body::from(body))
}

const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub(crate) const SIGN_IN_PAGE: &str = r#"<!DOCTYPE html>
<html class="gl-light" lang="en">
<head>
<meta charset="utf-8">
<title>Sign in · GitLab</title>
<meta content="GitLab" property="og:site_name">
<meta content="width=device-width, initial-scale=1" name="viewport">
</head>
<body class="gl-h-full login-page navless" data-page="sessions:new">
<div class="container">
<h1>GitLab Community Edition</h1>
<form class="gl-show-field-errors" id="new_user" action="/users/sign_in" accept-charset="UTF-8" method="post">
<input type="hidden" name="authenticity_token" value="sim-not-a-real-token" autocomplete="off">
<label for="user_login">Username or primary email</label>
<input class="form-control" autocomplete="username" type="text" name="user[login]" id="user_login">
<label for="user_password">Password</label>
<input class="form-control" type="password" autocomplete="current-password" name="user[password]" id="user_password">
<button type="submit" class="btn btn-confirm" data-testid="sign-in-button">Sign in</button>
</form>
</div>
</body>
</html>
"#;

pub(crate) const GITLAB_404_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Not Found</title>
</head>
<body>
<h1>404</h1>
<h3>Page not found</h3>
<p>Make sure the address is correct and the page has not moved.</p>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_path_is_normalised() {
        assert_eq!(normalise_base_path(""), "");
        assert_eq!(normalise_base_path("/"), "");
        assert_eq!(normalise_base_path("gitlab/"), "/gitlab");
        assert_eq!(normalise_base_path("/a/b"), "/a/b");
    }

    #[test]
    fn strip_base_respects_segment_boundaries() {
        assert_eq!(strip_base("/gitlab/api", "/gitlab"), Some("/api"));
        assert_eq!(strip_base("/gitlab", "/gitlab"), Some(""));
        assert_eq!(strip_base("/gitlabx/api", "/gitlab"), None);
        assert_eq!(strip_base("/api", ""), Some("/api"));
    }

    #[test]
    fn huge_body_has_exact_size() {
        for size in [0, 5, 14, 15, 1000] {
            let response = huge_body(size);
            let len = exact_len(response.body());
            assert_eq!(len, size);
        }
    }

    fn exact_len(body: &Body) -> usize {
        use axum::body::HttpBody;
        usize::try_from(body.size_hint().exact().unwrap_or(u64::MAX)).unwrap_or(usize::MAX)
    }

    #[test]
    fn revision_is_stable_hex() {
        let r = revision_for("17.8.1-ee");
        assert_eq!(r, revision_for("17.8.1-ee"));
        assert_eq!(r.len(), 11);
        assert!(r.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

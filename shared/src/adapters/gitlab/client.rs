//! One GitLab instance seen through a pinned, hardened HTTP client: requests only under the
//! instance's base URL, no redirects, no proxies, bounded bodies, typed answers and errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::GitlabSettings;
use super::tls::TlsRoots;
use crate::domain::gitlab::GitlabError;
use crate::domain::url_policy::InstanceHost;
use crate::ports::ResolvedInstance;

/// Error bodies are small; anything bigger is not worth reading.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A `reqwest` resolver that refuses every name: the only names a client may use are the
/// pinned overrides, which reqwest consults before the resolver.
struct RefuseResolver;

impl reqwest::dns::Resolve for RefuseResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async { Err("name resolution outside the pinned instance is refused".into()) })
    }
}

/// A client bound to one instance, its validated addresses and one token.
pub struct GitlabClient {
    http: reqwest::Client,
    instance: ResolvedInstance,
    token: SecretString,
    max_body: usize,
    /// The `RateLimit-*` headers of the latest answer that carried them.
    rate: std::sync::Mutex<super::paging::RateInfo>,
}

impl std::fmt::Debug for GitlabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitlabClient").field("instance", &self.instance.url.base_url()).finish_non_exhaustive()
    }
}

impl GitlabClient {
    /// Builds the pinned client (security policy 8.3).
    pub fn new(
        settings: &GitlabSettings,
        roots: &TlsRoots,
        instance: &ResolvedInstance,
        ca_pem: Option<&str>,
        token: SecretString,
    ) -> Result<Self, GitlabError> {
        let tls = roots.client_config(ca_pem)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(4)
            .http1_max_headers(100)
            .user_agent(settings.user_agent.as_str())
            .dns_resolver(Arc::new(RefuseResolver));
        if let InstanceHost::Domain(name) = instance.url.host() {
            let port = instance.url.port();
            let addrs: Vec<SocketAddr> = instance.addresses.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            builder = builder.resolve_to_addrs(name, &addrs);
        }
        let http = builder.build().map_err(|_| GitlabError::Unreachable)?;
        Ok(Self {
            http,
            instance: instance.clone(),
            token,
            max_body: settings.max_body_bytes,
            rate: std::sync::Mutex::new(super::paging::RateInfo::default()),
        })
    }

    /// `GET <api_url><path_and_query>`, decoded into `T`.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, GitlabError> {
        let url = format!("{}{}", self.instance.url.api_url(), path_and_query);
        self.get_url(&url).await
    }

    /// `GET <base_url><path>` for the few endpoints outside `/api/v4` (`/oauth/token/info`).
    pub async fn get_root<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitlabError> {
        let url = format!("{}{}", self.instance.url.base_url(), path);
        self.get_url(&url).await
    }

    /// Checks that a URL stays on the instance: same scheme, host and port, path under the
    /// relative root. Only then may the token be attached.
    pub fn check_url(&self, raw: &str) -> Result<Url, GitlabError> {
        let url = Url::parse(raw).map_err(|_| GitlabError::OffOrigin)?;
        let base = &self.instance.url;
        let host_ok = match (url.host(), base.host()) {
            (Some(url::Host::Domain(h)), InstanceHost::Domain(b)) => h == b,
            (Some(url::Host::Ipv4(h)), InstanceHost::Ipv4(b)) => h == *b,
            (Some(url::Host::Ipv6(h)), InstanceHost::Ipv6(b)) => h == *b,
            _ => false,
        };
        let prefix = format!("{}/", base.path_prefix());
        if url.scheme() != "https"
            || !host_ok
            || url.port_or_known_default() != Some(base.port())
            || !url.path().starts_with(&prefix)
            || !url.username().is_empty()
            || url.password().is_some()
            || url.fragment().is_some()
        {
            return Err(GitlabError::OffOrigin);
        }
        Ok(url)
    }

    /// Like [`GitlabClient::get`], also returning the response headers (pagination, rate limits).
    pub async fn get_with_headers<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<(T, HeaderMap), GitlabError> {
        let url = format!("{}{}", self.instance.url.api_url(), path_and_query);
        self.fetch(&url).await
    }

    /// How long to wait before the next call so as not to run into the instance's limit: until
    /// `RateLimit-Reset` (at most a minute) once `RateLimit-Remaining` falls to 2 % of
    /// `RateLimit-Limit` (at least 2); `None` otherwise, or when GitLab sent no such headers.
    pub fn pause(&self) -> Option<Duration> {
        let rate = *self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        rate.pause_at(now)
    }

    /// The instance this client is bound to.
    pub fn instance(&self) -> &ResolvedInstance {
        &self.instance
    }

    async fn get_url<T: DeserializeOwned>(&self, raw: &str) -> Result<T, GitlabError> {
        self.fetch(raw).await.map(|(value, _)| value)
    }

    async fn fetch<T: DeserializeOwned>(&self, raw: &str) -> Result<(T, HeaderMap), GitlabError> {
        let (status, headers, body) = self.call(reqwest::Method::GET, raw, None).await?;
        interpret(status, &headers, &body).map(|value| (value, headers))
    }

    /// `POST`/`PUT <api_url><path>` with a JSON body, decoded into `T`.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, GitlabError> {
        let url = format!("{}{}", self.instance.url.api_url(), path);
        let (status, headers, bytes) = self.call(method, &url, Some(body)).await?;
        interpret(status, &headers, &bytes)
    }

    /// `POST <base_url><path>` with a JSON body, for the few endpoints outside `/api/v4`
    /// (`/api/graphql`), decoded into `T`.
    pub async fn post_root_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, GitlabError> {
        let url = format!("{}{}", self.instance.url.base_url(), path);
        let (status, headers, bytes) = self.call(reqwest::Method::POST, &url, Some(body)).await?;
        interpret(status, &headers, &bytes)
    }

    /// `DELETE <api_url><path>`: 204 (or any 2xx) is done; errors map as for reads.
    pub async fn delete(&self, path: &str) -> Result<(), GitlabError> {
        let url = format!("{}{}", self.instance.url.api_url(), path);
        let (status, headers, bytes) = self.call(reqwest::Method::DELETE, &url, None).await?;
        if status.is_success() {
            return Ok(());
        }
        interpret::<serde_json::Value>(status, &headers, &bytes).map(|_| ())
    }

    /// One git smart HTTP request for a fetch (`<project>.git/info/refs?service=git-upload-pack`
    /// or `<project>.git/git-upload-pack`, nothing else): the URL checked to stay on the instance,
    /// the token sent only as `Authorization: Basic base64("oauth2:" + token)` (gitlab-api.md 5.1:
    /// OAuth tokens need the user name `oauth2`, the others ignore it), marked sensitive, through
    /// the pinned client. `timeout` replaces the client's per-request timeout (a pack can take
    /// longer than an API call). A redirect is an error; any other status is returned for the
    /// caller to read, since git answers 401 with `WWW-Authenticate` rather than JSON.
    pub async fn git_request(
        &self,
        method: reqwest::Method,
        raw: &str,
        mut headers: HeaderMap,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response, GitlabError> {
        use base64::Engine as _;

        let url = self.check_url(raw)?;
        let upload_pack = match (url.path().strip_suffix("/info/refs"), url.query()) {
            (Some(repo), Some("service=git-upload-pack")) => repo.ends_with(".git") && method == reqwest::Method::GET,
            (None, None) => {
                url.path().strip_suffix("/git-upload-pack").is_some_and(|repo| repo.ends_with(".git"))
                    && method == reqwest::Method::POST
            }
            _ => false,
        };
        if !upload_pack {
            return Err(GitlabError::OffOrigin);
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{}", self.token.expose_secret()));
        let mut auth = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| GitlabError::Unauthorized)?;
        auth.set_sensitive(true);
        for name in [header::HOST, header::COOKIE, header::PROXY_AUTHORIZATION] {
            headers.remove(name);
        }
        headers.insert(header::AUTHORIZATION, auth);
        let path = url.path().to_owned();
        let mut request = self.http.request(method.clone(), url).headers(headers).timeout(timeout);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| classify_transport(&e))?;
        let status = response.status();
        tracing::debug!(method = %method, path = %path, status = status.as_u16(), "gitlab git endpoint answered");
        if status.is_redirection() {
            return Err(GitlabError::NotGitlab { why: "redirect" });
        }
        Ok(response)
    }

    /// One request to the instance: the URL checked to stay on it, the token in a sensitive
    /// header, no redirects followed, the body read up to its cap.
    async fn call(
        &self,
        method: reqwest::Method,
        raw: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), GitlabError> {
        let url = self.check_url(raw)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
            .map_err(|_| GitlabError::Unauthorized)?;
        auth.set_sensitive(true);
        let path = url.path().to_owned();
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.header(header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let rate = super::paging::RateInfo::from_headers(&headers);
        if rate.remaining.is_some() {
            *self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = rate;
        }
        tracing::debug!(method = %method, path = %path, status = status.as_u16(), "gitlab answered");
        if status.is_redirection() {
            return Err(GitlabError::NotGitlab { why: "redirect" });
        }
        let cap = if status.is_success() { self.max_body } else { MAX_ERROR_BODY };
        let body = read_capped(response, cap).await?;
        Ok((status, headers, body))
    }
}

/// Reads a body up to `cap` bytes; past that the instance is not behaving like GitLab.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, GitlabError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(GitlabError::NotGitlab { why: "body too large" });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify_transport(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(GitlabError::NotGitlab { why: "body too large" });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    message: Option<serde_json::Value>,
}

/// Maps status, headers and body into a value or a [`GitlabError`] (gitlab-api.md 1.5, 3.1).
pub fn interpret<T: DeserializeOwned>(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<T, GitlabError> {
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Rack::Attack answers 429 in plain text; application limits in JSON. Both are GitLab.
        return Err(GitlabError::RateLimited { retry_after: retry_after(headers) });
    }
    if status.is_server_error() {
        return Err(GitlabError::Server { status: status.as_u16() });
    }
    if !is_json(headers) {
        return Err(GitlabError::NotGitlab { why: "not json" });
    }
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|_| GitlabError::NotGitlab { why: "unexpected json" });
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let Some(err) = parsed else {
        return Err(GitlabError::NotGitlab { why: "error body not json" });
    };
    let description = err.error_description.unwrap_or_default().to_ascii_lowercase();
    match status {
        StatusCode::UNAUTHORIZED
            if err.error.as_deref() == Some("invalid_token") && description.contains("expired") =>
        {
            Err(GitlabError::TokenExpired)
        }
        StatusCode::UNAUTHORIZED
            if err.error.as_deref() == Some("invalid_token") && description.contains("revoked") =>
        {
            Err(GitlabError::TokenRevoked)
        }
        StatusCode::UNAUTHORIZED if err.error.is_some() || err.message.is_some() => Err(GitlabError::Unauthorized),
        StatusCode::FORBIDDEN if err.error.as_deref() == Some("insufficient_scope") => {
            Err(GitlabError::InsufficientScope { scope: err.scope })
        }
        StatusCode::FORBIDDEN => Err(GitlabError::Forbidden),
        StatusCode::NOT_FOUND => Err(GitlabError::NotFound),
        StatusCode::BAD_REQUEST => Err(GitlabError::BadRequest),
        StatusCode::CONFLICT => Err(GitlabError::Conflict),
        StatusCode::UNPROCESSABLE_ENTITY => Err(GitlabError::Unprocessable),
        _ => Err(GitlabError::NotGitlab { why: "unexpected status" }),
    }
}

/// `Retry-After` (delta-seconds or HTTP-date), else `RateLimit-Reset` (Unix time).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

fn retry_after_at(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    if let Some(v) = headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        if let Ok(secs) = v.trim().parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        // RFC 9110 HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime); a date
        // in the past means now. Whole seconds, rounded up, so a retry never comes early.
        if let Ok(at) = httpdate::parse_http_date(v.trim()) {
            let wait = at.duration_since(now).unwrap_or_default();
            return Some(Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)));
        }
    }
    let reset =
        headers.get("ratelimit-reset").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok())?;
    let now =
        i64::try_from(now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()).unwrap_or(i64::MAX);
    Some(Duration::from_secs(reset.saturating_sub(now).max(0).unsigned_abs()))
}

/// Whether any error in the chain matches. `io::Error::source()` skips the error it wraps, so
/// wrapped errors are entered explicitly (hyper wraps rustls errors in two io::Errors).
fn chain_has(
    err: &(dyn std::error::Error + 'static),
    pred: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    if pred(err) {
        return true;
    }
    if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && chain_has(inner, pred)
    {
        return true;
    }
    err.source().is_some_and(|next| chain_has(next, pred))
}

/// Classifies a transport failure: timeout, TLS, or unreachable.
fn classify_transport(err: &reqwest::Error) -> GitlabError {
    let kind = classify(err);
    // Only the category: the error's Debug text names the socket address that was pinned.
    tracing::debug!(error.kind = %kind, "gitlab transport error");
    kind
}

fn classify(err: &reqwest::Error) -> GitlabError {
    if err.is_timeout() {
        return GitlabError::Timeout;
    }
    if chain_has(err, &|e| e.downcast_ref::<rustls::Error>().is_some()) {
        return GitlabError::Tls;
    }
    if chain_has(err, &|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    }) {
        return GitlabError::Timeout;
    }
    if err.is_redirect() {
        return GitlabError::NotGitlab { why: "redirect" };
    }
    if err.is_body() || err.is_decode() {
        return GitlabError::NotGitlab { why: "broken body" };
    }
    GitlabError::Unreachable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn err(status: u16, ct: &str, body: &str) -> GitlabError {
        interpret::<serde_json::Value>(
            StatusCode::from_u16(status).expect("status"),
            &headers(&[("content-type", ct)]),
            body.as_bytes(),
        )
        .unwrap_err()
    }

    const JSON: &str = "application/json";

    #[test]
    fn gitlab_token_errors_are_told_apart() {
        assert_eq!(err(401, JSON, r#"{"message":"401 Unauthorized"}"#), GitlabError::Unauthorized);
        assert_eq!(
            err(
                401,
                JSON,
                r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#
            ),
            GitlabError::TokenExpired
        );
        assert_eq!(
            err(
                401,
                JSON,
                r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#
            ),
            GitlabError::TokenRevoked
        );
        assert_eq!(
            err(
                403,
                JSON,
                r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_api"}"#
            ),
            GitlabError::InsufficientScope { scope: Some("api read_api".into()) }
        );
        assert_eq!(err(403, JSON, r#"{"message":"403 Forbidden"}"#), GitlabError::Forbidden);
        assert_eq!(err(404, JSON, r#"{"message":"404 Project Not Found"}"#), GitlabError::NotFound);
        assert_eq!(err(400, JSON, r#"{"message":"400 Bad request - x"}"#), GitlabError::BadRequest);
    }

    #[test]
    fn non_gitlab_answers_are_not_gitlab() {
        assert!(matches!(err(200, "text/html", "<html>"), GitlabError::NotGitlab { .. }));
        assert!(matches!(err(404, "text/html", "<html>"), GitlabError::NotGitlab { .. }));
        assert!(matches!(err(401, "text/html", "denied"), GitlabError::NotGitlab { .. }));
        assert!(matches!(err(200, JSON, "{not json"), GitlabError::NotGitlab { .. }));
        assert!(matches!(err(418, JSON, "{}"), GitlabError::NotGitlab { .. }));
        assert_eq!(err(502, "text/html", "bad gateway"), GitlabError::Server { status: 502 });
    }

    #[test]
    fn rate_limits_read_retry_after_then_reset() {
        let e = interpret::<serde_json::Value>(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("content-type", "text/plain"), ("retry-after", "42")]),
            b"Retry later",
        )
        .unwrap_err();
        assert_eq!(e, GitlabError::RateLimited { retry_after: Some(Duration::from_secs(42)) });
        let reset = (time::OffsetDateTime::now_utc().unix_timestamp() + 30).to_string();
        let wait = retry_after(&headers(&[("ratelimit-reset", &reset)])).expect("reset");
        assert!((29..=30).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(retry_after(&headers(&[])), None);
    }

    #[test]
    fn retry_after_reads_every_http_date_form() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_747); // Sun, 06 Nov 1994 08:49:07 GMT
        let wait = |value: &str| retry_after_at(&headers(&[("retry-after", value)]), now);
        assert_eq!(wait("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(wait("Sunday, 06-Nov-94 08:49:37 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(wait("Sun Nov  6 08:49:37 1994"), Some(Duration::from_secs(30)));
        // A date already past means now; delta-seconds stay as they are.
        assert_eq!(wait("Sun, 06 Nov 1994 08:48:00 GMT"), Some(Duration::ZERO));
        assert_eq!(wait(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "soon"), ("ratelimit-reset", "784111757")]), now),
            Some(Duration::from_secs(10)),
            "an unreadable Retry-After falls back to RateLimit-Reset"
        );
        let subsecond = now + Duration::from_millis(250);
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]), subsecond),
            Some(Duration::from_secs(30)),
            "a fraction of a second rounds up"
        );
    }

    #[test]
    fn typed_success_bodies_decode() {
        #[derive(Deserialize)]
        struct V {
            version: String,
        }
        let v: V = interpret(
            StatusCode::OK,
            &headers(&[("content-type", "application/json; charset=utf-8")]),
            br#"{"version":"17.8.1","revision":"x"}"#,
        )
        .expect("decodes");
        assert_eq!(v.version, "17.8.1");
    }
}

//! Pagination and rate-limit headers, read defensively: the next page is rebuilt from the stored
//! base URL and a cursor, never taken from a `Link` header that points elsewhere or backwards.

use http::HeaderMap;
use url::Url;

use crate::domain::gitlab::GitlabError;
use crate::domain::url_policy::{InstanceHost, InstanceUrl};

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return target.strip_prefix('<').and_then(|t| t.strip_suffix('>')).map(str::to_owned);
            }
        }
    }
    None
}

/// The keyset cursor (`id_after`) of the next page of `GET <api>/projects`.
///
/// `Ok(None)` at the end. A link to another origin, to http, to another path, without a numeric
/// `id_after`, or with a cursor that does not move past `current` ends the listing with an error
/// instead of a loop (security policy 8.3; user needs 2: proxies rewriting links).
pub fn next_project_cursor(
    headers: &HeaderMap,
    instance: &InstanceUrl,
    current: u64,
) -> Result<Option<u64>, GitlabError> {
    let Some(raw) = next_link(headers) else {
        return Ok(None);
    };
    let url = Url::parse(&raw).map_err(|_| GitlabError::OffOrigin)?;
    let same_host = match (url.host(), instance.host()) {
        (Some(url::Host::Domain(h)), InstanceHost::Domain(b)) => h.eq_ignore_ascii_case(b),
        (Some(url::Host::Ipv4(h)), InstanceHost::Ipv4(b)) => h == *b,
        (Some(url::Host::Ipv6(h)), InstanceHost::Ipv6(b)) => h == *b,
        _ => false,
    };
    let expected_path = format!("{}/api/v4/projects", instance.path_prefix());
    if url.scheme() != "https"
        || !same_host
        || url.port_or_known_default() != Some(instance.port())
        || url.path() != expected_path
    {
        return Err(GitlabError::OffOrigin);
    }
    let cursor = url
        .query_pairs()
        .find(|(k, _)| k == "id_after")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .ok_or(GitlabError::NotGitlab { why: "next link without id_after" })?;
    if cursor <= current {
        return Err(GitlabError::NotGitlab { why: "cursor does not advance" });
    }
    if !crate::domain::listing::is_gitlab_id(cursor) {
        return Err(GitlabError::NotGitlab { why: "cursor outside GitLab's id range" });
    }
    Ok(Some(cursor))
}

/// What the `RateLimit-*` headers said (present on most GitLab answers; absent on some limits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateInfo {
    /// `RateLimit-Limit`: requests per period.
    pub limit: Option<u64>,
    /// `RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `RateLimit-Reset`: Unix time when the window resets.
    pub reset_at: Option<i64>,
}

impl RateInfo {
    /// Reads the headers; malformed values count as absent.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let num =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
        Self {
            limit: num("ratelimit-limit").and_then(|n| u64::try_from(n).ok()),
            remaining: num("ratelimit-remaining").and_then(|n| u64::try_from(n).ok()),
            reset_at: num("ratelimit-reset"),
        }
    }

    /// At Unix time `now`, how long to wait before the next call: until the reset (at most a
    /// minute) once at most 2 % of the limit (and at least 2 calls) remains; `None` with room
    /// left, without headers, or when the reset has passed.
    pub fn pause_at(&self, now: u64) -> Option<std::time::Duration> {
        let floor = self.limit.map_or(2, |l| (l / 50).max(2));
        if self.remaining? > floor {
            return None;
        }
        let reset = u64::try_from(self.reset_at?).ok()?;
        (reset > now).then(|| std::time::Duration::from_secs(reset - now).min(std::time::Duration::from_secs(60)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::url_policy::UrlPolicy;
    use http::HeaderValue;

    #[test]
    fn calls_pause_until_the_reset_once_the_limit_is_nearly_spent() {
        let rate = |limit, remaining, reset_at| RateInfo { limit, remaining, reset_at };
        let now = 1_000;
        assert_eq!(rate(Some(2000), Some(500), Some(1_030)).pause_at(now), None, "room left");
        assert_eq!(rate(Some(2000), Some(40), Some(1_030)).pause_at(now), Some(std::time::Duration::from_secs(30)));
        assert_eq!(rate(Some(60), Some(2), Some(1_010)).pause_at(now), Some(std::time::Duration::from_secs(10)));
        assert_eq!(rate(Some(60), Some(3), Some(1_010)).pause_at(now), None);
        assert_eq!(rate(None, Some(1), Some(5_000)).pause_at(now), Some(std::time::Duration::from_secs(60)), "capped");
        assert_eq!(rate(Some(60), Some(0), Some(900)).pause_at(now), None, "the reset has passed");
        assert_eq!(rate(None, None, None).pause_at(now), None, "no headers");
    }

    fn instance(raw: &str) -> InstanceUrl {
        InstanceUrl::parse(raw, &UrlPolicy::default()).expect("url")
    }

    fn link(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::LINK, HeaderValue::from_str(value).expect("header"));
        h
    }

    const NEXT: &str = r#"<https://gitlab.example.com/api/v4/projects?id_after=42&membership=true&order_by=id&pagination=keyset&per_page=100&simple=true&sort=asc>; rel="next""#;

    #[test]
    fn follows_gitlab_keyset_links_on_the_same_instance() {
        let base = instance("https://gitlab.example.com");
        assert_eq!(next_project_cursor(&link(NEXT), &base, 0), Ok(Some(42)));
        assert_eq!(next_project_cursor(&HeaderMap::new(), &base, 0), Ok(None));
        let both = format!(r#"<https://gitlab.example.com/api/v4/projects?page=1>; rel="first", {NEXT}"#);
        assert_eq!(next_project_cursor(&link(&both), &base, 7), Ok(Some(42)));
        let sub = instance("https://example.com/gitlab");
        let sub_link = r#"<https://example.com/gitlab/api/v4/projects?id_after=9>; rel="next""#;
        assert_eq!(next_project_cursor(&link(sub_link), &sub, 1), Ok(Some(9)));
    }

    #[test]
    fn refuses_links_that_leave_the_instance_or_do_not_advance() {
        let base = instance("https://gitlab.example.com");
        for bad in [
            r#"<https://evil.example.net/api/v4/projects?id_after=42>; rel="next""#,
            r#"<http://gitlab.example.com/api/v4/projects?id_after=42>; rel="next""#,
            r#"<https://gitlab.example.com:8443/api/v4/projects?id_after=42>; rel="next""#,
            r#"<https://gitlab.example.com/api/v4/users?id_after=42>; rel="next""#,
            r#"<https://gitlab.example.com/gitlab/api/v4/projects?id_after=42>; rel="next""#,
            r#"<not a url>; rel="next""#,
        ] {
            assert_eq!(next_project_cursor(&link(bad), &base, 0), Err(GitlabError::OffOrigin), "{bad}");
        }
        assert!(matches!(next_project_cursor(&link(NEXT), &base, 42), Err(GitlabError::NotGitlab { .. })));
        assert!(matches!(next_project_cursor(&link(NEXT), &base, 50), Err(GitlabError::NotGitlab { .. })));
        let no_cursor = r#"<https://gitlab.example.com/api/v4/projects?page=2>; rel="next""#;
        assert!(matches!(next_project_cursor(&link(no_cursor), &base, 0), Err(GitlabError::NotGitlab { .. })));
        // Ids are PostgreSQL bigints: a cursor above i64::MAX is not GitLab's.
        let huge =
            format!(r#"<https://gitlab.example.com/api/v4/projects?id_after={}>; rel="next""#, i64::MAX as u64 + 1);
        assert!(matches!(next_project_cursor(&link(&huge), &base, 0), Err(GitlabError::NotGitlab { .. })));
        let top = format!(r#"<https://gitlab.example.com/api/v4/projects?id_after={}>; rel="next""#, i64::MAX);
        assert_eq!(next_project_cursor(&link(&top), &base, 0), Ok(Some(i64::MAX as u64)));
    }

    #[test]
    fn reads_rate_limit_headers() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", HeaderValue::from_static("2000"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("17"));
        h.insert("ratelimit-reset", HeaderValue::from_static("1795320000"));
        assert_eq!(
            RateInfo::from_headers(&h),
            RateInfo { limit: Some(2000), remaining: Some(17), reset_at: Some(1795320000) }
        );
        h.insert("ratelimit-remaining", HeaderValue::from_static("-3"));
        assert_eq!(RateInfo::from_headers(&h).remaining, None);
        assert_eq!(RateInfo::from_headers(&HeaderMap::new()), RateInfo::default());
    }
}

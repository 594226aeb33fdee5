//! Validation and normalisation of GitLab instance URLs (security policy A 8.1), done on
//! the raw string before any parser or DNS lookup sees it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::address::{self, Allowlist};

/// Longest instance URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Most path segments a subpath install may have.
pub const MAX_PATH_SEGMENTS: usize = 5;

/// Names that are never a public GitLab instance. `"*.x"` matches `x` itself and every
/// name below it.
const BUILTIN_DENIED: &[&str] = &["localhost", "*.localhost", "*.local", "*.localdomain", "*.internal", "*.home.arpa"];

/// Host part of a validated instance URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceHost {
    /// A DNS name, lower-cased, without trailing dot.
    Domain(String),
    /// A public (or allowlisted) IPv4 literal.
    Ipv4(Ipv4Addr),
    /// A public (or allowlisted) IPv6 literal, written in brackets in the URL.
    Ipv6(Ipv6Addr),
}

/// A validated, normalised GitLab instance URL: `https`, a host, an optional port and an
/// optional path prefix for subpath installs. Nothing else (no credentials, query,
/// fragment or `/api/v4`) can be represented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceUrl {
    host: InstanceHost,
    /// Explicit port other than 443; 443 is not kept so `:443` and no port compare equal.
    port: Option<u16>,
    /// `""` or `/seg(/seg)*` without trailing slash.
    path_prefix: String,
    allowlisted: bool,
}

/// What an instance URL is checked against besides the fixed rules.
#[derive(Clone, Debug, Default)]
pub struct UrlPolicy {
    /// Operator allowlist: exempts hosts from the private-address and name-denylist rules.
    pub allowlist: Allowlist,
    /// The project's own endpoint hosts (API, function URLs), lower-case. An entry is an
    /// exact name (or IP text), or `"*.x"`, which matches `x` and every name ending in `.x`.
    pub denied_hosts: Vec<String>,
}

/// Machine-readable reason an instance URL was refused (`details.reason` in the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UrlReason {
    /// Does not start with `https://`.
    NotHttps,
    /// The path contains `/api/v4`: the user entered the API URL, not the instance URL.
    HasApiPath,
    /// Contains `@` (user info).
    HasCredentials,
    /// Contains `?` or `#`.
    HasQueryOrFragment,
    /// The host is not a valid DNS name or canonical IP literal.
    BadHost,
    /// The port is malformed or outside 443 / 1024-65535.
    BadPort,
    /// The path is not a plain GitLab base path.
    BadPath,
    /// The host is an IP literal that is not publicly routable.
    IpLiteralNotPublic,
    /// The host name resolves to an address that is not publicly routable.
    PrivateAddress,
    /// The host name is on the name denylist.
    DeniedName,
    /// The host name could not be resolved.
    DnsFailure,
    /// The URL is longer than 2048 bytes.
    TooLong,
    /// The URL contains spaces, control or non-ASCII characters, `\` or `%`.
    BadCharacters,
}

impl UrlReason {
    /// Every reason, in declaration order.
    pub const ALL: [UrlReason; 13] = [
        UrlReason::NotHttps,
        UrlReason::HasApiPath,
        UrlReason::HasCredentials,
        UrlReason::HasQueryOrFragment,
        UrlReason::BadHost,
        UrlReason::BadPort,
        UrlReason::BadPath,
        UrlReason::IpLiteralNotPublic,
        UrlReason::PrivateAddress,
        UrlReason::DeniedName,
        UrlReason::DnsFailure,
        UrlReason::TooLong,
        UrlReason::BadCharacters,
    ];

    /// The snake_case code used as `details.reason` in API errors.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlReason::NotHttps => "not_https",
            UrlReason::HasApiPath => "has_api_path",
            UrlReason::HasCredentials => "has_credentials",
            UrlReason::HasQueryOrFragment => "has_query_or_fragment",
            UrlReason::BadHost => "bad_host",
            UrlReason::BadPort => "bad_port",
            UrlReason::BadPath => "bad_path",
            UrlReason::IpLiteralNotPublic => "ip_literal_not_public",
            UrlReason::PrivateAddress => "private_address",
            UrlReason::DeniedName => "denied_name",
            UrlReason::DnsFailure => "dns_failure",
            UrlReason::TooLong => "too_long",
            UrlReason::BadCharacters => "bad_characters",
        }
    }

    fn default_message(self) -> &'static str {
        match self {
            UrlReason::NotHttps => "The instance URL must start with https://.",
            UrlReason::HasApiPath => "The instance URL points at the GitLab API instead of the instance itself.",
            UrlReason::HasCredentials => "The instance URL must not contain a user name, a password or an @ sign.",
            UrlReason::HasQueryOrFragment => "The instance URL must not contain a query string or a fragment.",
            UrlReason::BadHost => "The instance URL does not contain a valid host name.",
            UrlReason::BadPort => "The port in the instance URL is not allowed.",
            UrlReason::BadPath => "The path in the instance URL is not a GitLab base path.",
            UrlReason::IpLiteralNotPublic => "The instance URL points to an IP address that is not publicly routable.",
            UrlReason::PrivateAddress => "The instance host name resolves to an address that is not publicly routable.",
            UrlReason::DeniedName => "The instance host name is not allowed.",
            UrlReason::DnsFailure => "The instance host name could not be resolved.",
            UrlReason::TooLong => "The instance URL is longer than 2048 characters.",
            UrlReason::BadCharacters => {
                "The instance URL contains spaces, control characters, non-ASCII characters, backslashes or percent signs."
            }
        }
    }

    fn default_hint(self) -> &'static str {
        match self {
            UrlReason::NotHttps => {
                "Enter the full address including https://, for example https://gitlab.example.com; plain http is not supported."
            }
            UrlReason::HasApiPath => {
                "Enter the instance's base URL without /api/v4, for example https://gitlab.example.com or https://example.com/gitlab."
            }
            UrlReason::HasCredentials => {
                "Remove the credentials from the URL and enter the access token in the token field."
            }
            UrlReason::HasQueryOrFragment => "Remove everything from the first ? or # onwards.",
            UrlReason::BadHost => {
                "Use a fully qualified host name such as gitlab.example.com, a public IPv4 address, or an IPv6 address in brackets."
            }
            UrlReason::BadPort => "Leave the port out for 443, or use a port from 1024 to 65535.",
            UrlReason::BadPath => {
                "Enter only the instance's base URL, for example https://gitlab.example.com or https://example.com/gitlab, without a project path, .git or /-/ routes."
            }
            UrlReason::IpLiteralNotPublic | UrlReason::PrivateAddress => {
                "Use the instance's public host name. An operator can allowlist internal addresses for self-managed instances."
            }
            UrlReason::DeniedName => {
                "Local and internal names such as localhost, *.local or *.internal cannot be used; enter the instance's public host name."
            }
            UrlReason::DnsFailure => "Check the host name for typos and that it has a public DNS record.",
            UrlReason::TooLong => "Enter only the base URL of the instance.",
            UrlReason::BadCharacters => {
                "Type the URL in plain ASCII without spaces or encoded characters; enter internationalised names in their xn-- form."
            }
        }
    }
}

impl fmt::Display for UrlReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an instance URL was refused, with text for a person. `message` and `hint` never
/// repeat the raw input or any IP address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UrlRejection {
    /// Machine-readable reason.
    pub reason: UrlReason,
    /// One sentence describing the problem.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl UrlRejection {
    /// A rejection with the default message and hint for `reason`.
    pub fn new(reason: UrlReason) -> Self {
        UrlRejection {
            reason,
            message: reason.default_message().to_owned(),
            hint: Some(reason.default_hint().to_owned()),
        }
    }

    /// A rejection for a resolved address that failed [`address::check_resolved`]. The
    /// message names the rule, never the address. An empty answer is a DNS failure.
    pub fn from_blocked(blocked: address::BlockedAddress) -> Self {
        if blocked.is_no_address() {
            return UrlRejection::new(UrlReason::DnsFailure);
        }
        let mut rejection = UrlRejection::new(UrlReason::PrivateAddress);
        rejection.message =
            format!("The instance host name resolves to an address that is not publicly routable ({}).", blocked.rule);
        rejection
    }

    fn empty() -> Self {
        let mut rejection = UrlRejection::new(UrlReason::BadHost);
        rejection.message = "The instance URL is empty.".to_owned();
        rejection.hint = Some("Enter the instance's address, for example https://gitlab.example.com.".to_owned());
        rejection
    }

    fn ip_literal(blocked: address::BlockedAddress) -> Self {
        let mut rejection = UrlRejection::new(UrlReason::IpLiteralNotPublic);
        rejection.message =
            format!("The instance URL points to an IP address that is not publicly routable ({}).", blocked.rule);
        rejection
    }
}

fn reject<T>(reason: UrlReason) -> Result<T, UrlRejection> {
    Err(UrlRejection::new(reason))
}

impl InstanceUrl {
    /// Validates and normalises a user-supplied instance URL (security policy A 8.1).
    ///
    /// Checks run in this order and the first failure wins:
    /// 1. empty -> `BadHost` (nothing was entered, so there is no host); over 2048 bytes ->
    ///    `TooLong`; a byte outside 0x21-0x7E -> `BadCharacters`;
    /// 2. `@` -> `HasCredentials`; `?` or `#` -> `HasQueryOrFragment`; `\` or `%` ->
    ///    `BadCharacters` (so zone ids, which need `%`, end here too);
    /// 3. not starting with `https://` (any case), or `https:///...` -> `NotHttps`;
    /// 4. host syntax -> `BadHost`; IP literals must be a canonical dotted quad or a
    ///    bracketed IPv6 address and public by A 8.2 unless allowlisted ->
    ///    `IpLiteralNotPublic`; name denylist -> `DeniedName` unless the exact name is
    ///    allowlisted; a single-label name not allowlisted -> `BadHost`;
    /// 5. port -> `BadPort`;
    /// 6. path containing the segments `api/v4` -> `HasApiPath`; other path rules ->
    ///    `BadPath`;
    /// 7. cross-check against `url::Url` -> the reason of the part that differs.
    ///
    /// The allowlist only relaxes the private-address, denylist and single-label rules.
    pub fn parse(raw: &str, policy: &UrlPolicy) -> Result<InstanceUrl, UrlRejection> {
        check_raw(raw)?;
        // check_raw guarantees printable ASCII and the https:// prefix, so byte slicing
        // is on character boundaries.
        let rest = &raw["https://".len()..];
        if rest.starts_with('/') {
            // "https:///host" is scheme-relative confusion: WHATWG parsers skip the
            // extra slashes, other parsers see an empty host.
            return reject(UrlReason::NotHttps);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host_text, port_text) = split_authority(authority)?;
        let (host, allowlisted) = parse_host(host_text, policy)?;
        let port = parse_port(port_text)?;
        let path_prefix = parse_path(path)?;
        let instance = InstanceUrl { host, port, path_prefix, allowlisted };
        instance.cross_check(raw, path)?;
        Ok(instance)
    }

    /// Compares what `url::Url` makes of the raw input, and of the normalised form, with
    /// what the checks above extracted, so no parser differential can slip through.
    fn cross_check(&self, raw: &str, raw_path: &str) -> Result<(), UrlRejection> {
        let expected_path = if raw_path.is_empty() { "/" } else { raw_path };
        self.compare_with_url(raw, expected_path)?;
        let normalised_path = if self.path_prefix.is_empty() { "/" } else { self.path_prefix.as_str() };
        self.compare_with_url(&self.base_url(), normalised_path)
    }

    fn compare_with_url(&self, text: &str, expected_path: &str) -> Result<(), UrlRejection> {
        let Ok(parsed) = url::Url::parse(text) else {
            return reject(UrlReason::BadHost);
        };
        if parsed.scheme() != "https" || parsed.cannot_be_a_base() {
            return reject(UrlReason::NotHttps);
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return reject(UrlReason::HasCredentials);
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return reject(UrlReason::HasQueryOrFragment);
        }
        let host_matches = match (parsed.host(), &self.host) {
            (Some(url::Host::Domain(d)), InstanceHost::Domain(ours)) => d == ours,
            (Some(url::Host::Ipv4(a)), InstanceHost::Ipv4(ours)) => a == *ours,
            (Some(url::Host::Ipv6(a)), InstanceHost::Ipv6(ours)) => a == *ours,
            _ => false,
        };
        if !host_matches {
            return reject(UrlReason::BadHost);
        }
        // url::Url drops the scheme's default port, as does InstanceUrl.
        if parsed.port() != self.port {
            return reject(UrlReason::BadPort);
        }
        if parsed.path() != expected_path {
            return reject(UrlReason::BadPath);
        }
        Ok(())
    }

    /// The host.
    pub fn host(&self) -> &InstanceHost {
        &self.host
    }

    /// The host as written in a URL: a domain, a dotted quad, or an IPv6 address in
    /// brackets (WHATWG serialisation, e.g. `[2001:4860::1]`).
    pub fn host_for_url(&self) -> String {
        match &self.host {
            InstanceHost::Domain(d) => d.clone(),
            InstanceHost::Ipv4(a) => a.to_string(),
            InstanceHost::Ipv6(a) => url::Host::<&str>::Ipv6(*a).to_string(),
        }
    }

    /// The host as given to a resolver or to `resolve_to_addrs`: a domain, or the IP
    /// address text without brackets.
    pub fn host_for_resolve(&self) -> String {
        match &self.host {
            InstanceHost::Domain(d) => d.clone(),
            InstanceHost::Ipv4(a) => a.to_string(),
            InstanceHost::Ipv6(_) => {
                let bracketed = self.host_for_url();
                bracketed.trim_start_matches('[').trim_end_matches(']').to_owned()
            }
        }
    }

    /// The IP address when the host is an IP literal.
    pub fn ip_literal(&self) -> Option<IpAddr> {
        match self.host {
            InstanceHost::Domain(_) => None,
            InstanceHost::Ipv4(a) => Some(IpAddr::V4(a)),
            InstanceHost::Ipv6(a) => Some(IpAddr::V6(a)),
        }
    }

    /// The port to connect to (443 unless another was given).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(443)
    }

    /// The port written in the URL, or `None` when absent or 443 (the default is not kept,
    /// so `https://h:443` and `https://h` are the same instance).
    pub fn explicit_port(&self) -> Option<u16> {
        self.port
    }

    /// The subpath of the install: `""`, `"/gitlab"`, `"/a/b"` (never a trailing slash).
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// `https://host` or `https://host:port` (port omitted when 443).
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("https://{}:{port}", self.host_for_url()),
            None => format!("https://{}", self.host_for_url()),
        }
    }

    /// Origin plus path prefix, without trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.origin(), self.path_prefix)
    }

    /// Base URL of the REST API: `base_url() + "/api/v4"`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.base_url())
    }

    /// True when the host is allowlisted by name, or is an IP literal inside an
    /// allowlisted range. Callers pass this to [`address::check_resolved`].
    pub fn is_allowlisted(&self) -> bool {
        self.allowlisted
    }
}

impl fmt::Display for InstanceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// Checks on the raw string, before anything interprets it (A 8.1 steps 1-3).
fn check_raw(raw: &str) -> Result<(), UrlRejection> {
    if raw.is_empty() {
        return Err(UrlRejection::empty());
    }
    if raw.len() > MAX_URL_LEN {
        return reject(UrlReason::TooLong);
    }
    if !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return reject(UrlReason::BadCharacters);
    }
    if raw.contains('@') {
        return reject(UrlReason::HasCredentials);
    }
    if raw.contains(['?', '#']) {
        return reject(UrlReason::HasQueryOrFragment);
    }
    if raw.contains(['\\', '%']) {
        return reject(UrlReason::BadCharacters);
    }
    let has_scheme = raw.get(.."https://".len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case("https://"));
    if !has_scheme {
        return reject(UrlReason::NotHttps);
    }
    Ok(())
}

/// Splits `host[:port]` or `[v6][:port]`; the port text is `None` when there is no colon.
fn split_authority(authority: &str) -> Result<(&str, Option<&str>), UrlRejection> {
    if let Some(inner) = authority.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return reject(UrlReason::BadHost);
        };
        let after = &inner[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return reject(UrlReason::BadHost),
        };
        // Keep the brackets so parse_host knows this was written as an IPv6 literal.
        return Ok((&authority[..end + 2], port));
    }
    if authority.contains(['[', ']']) || authority.matches(':').count() > 1 {
        // More than one colon outside brackets is an unbracketed IPv6 literal.
        return reject(UrlReason::BadHost);
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// Validates the host and reports whether the allowlist covers it.
fn parse_host(text: &str, policy: &UrlPolicy) -> Result<(InstanceHost, bool), UrlRejection> {
    if text.is_empty() {
        return reject(UrlReason::BadHost);
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let Ok(v6) = inner.parse::<Ipv6Addr>() else {
            return reject(UrlReason::BadHost);
        };
        return ip_literal_host(IpAddr::V6(v6), policy).map(|allowed| (InstanceHost::Ipv6(v6), allowed));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // std accepts only the canonical dotted quad (no octal, hex, short or dword forms,
        // no leading zeros); anything else numeric falls through to the name rules, which
        // refuse a last label made of digits.
        if let Ok(v4) = text.parse::<Ipv4Addr>() {
            return ip_literal_host(IpAddr::V4(v4), policy).map(|allowed| (InstanceHost::Ipv4(v4), allowed));
        }
    }
    let name = text.to_ascii_lowercase();
    if !address::is_dns_name(&name) {
        return reject(UrlReason::BadHost);
    }
    let allowlisted = policy.allowlist.allows_host(&name);
    if !allowlisted && is_denied(&name, policy) {
        return reject(UrlReason::DeniedName);
    }
    if !allowlisted && !name.contains('.') {
        return reject(UrlReason::BadHost);
    }
    Ok((InstanceHost::Domain(name), allowlisted))
}

fn ip_literal_host(ip: IpAddr, policy: &UrlPolicy) -> Result<bool, UrlRejection> {
    let allowlisted = policy.allowlist.allows_ip(ip);
    if !allowlisted {
        address::classify(ip).map_err(UrlRejection::ip_literal)?;
    }
    let text = ip.to_string();
    if policy.denied_hosts.iter().any(|d| d.eq_ignore_ascii_case(&text)) {
        return reject(UrlReason::DeniedName);
    }
    Ok(allowlisted)
}

fn is_denied(name: &str, policy: &UrlPolicy) -> bool {
    BUILTIN_DENIED
        .iter()
        .copied()
        .chain(policy.denied_hosts.iter().map(String::as_str))
        .any(|pattern| name_matches(name, pattern))
}

/// `"*.x"` matches `x` and every name ending in `.x`; anything else matches exactly.
/// `name` is already lower-case; patterns are compared case-insensitively.
fn name_matches(name: &str, pattern: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name == suffix || name.ends_with(&format!(".{suffix}")),
        None => name == pattern,
    }
}

/// `[1-9][0-9]{0,4}`, and either 443 or 1024-65535. Returns `None` for absent or 443.
fn parse_port(text: Option<&str>) -> Result<Option<u16>, UrlRejection> {
    let Some(text) = text else {
        return Ok(None);
    };
    let well_formed =
        (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    if !well_formed {
        return reject(UrlReason::BadPort);
    }
    match text.parse::<u16>() {
        Ok(443) => Ok(None),
        Ok(port) if port >= 1024 => Ok(Some(port)),
        _ => reject(UrlReason::BadPort),
    }
}

/// Validates the path (A 8.1 step 7) and returns the prefix without trailing slash.
fn parse_path(path: &str) -> Result<String, UrlRejection> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    // trimmed starts with '/' because it is what followed the authority.
    let segments: Vec<&str> = trimmed[1..].split('/').collect();
    // Any "api/v4" pair, not just a trailing one: a prefix such as /api/v4/projects
    // would otherwise be stored and produce .../api/v4/projects/api/v4.
    let has_api = segments.windows(2).any(|w| w[0].eq_ignore_ascii_case("api") && w[1].eq_ignore_ascii_case("v4"));
    if has_api {
        return reject(UrlReason::HasApiPath);
    }
    if segments.len() > MAX_PATH_SEGMENTS {
        return reject(UrlReason::BadPath);
    }
    for segment in &segments {
        let charset_ok = !segment.is_empty()
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        // "-" is GitLab's /-/ route separator; "." and ".." would be collapsed by parsers.
        if !charset_ok || matches!(*segment, "." | ".." | "-") {
            return reject(UrlReason::BadPath);
        }
    }
    let last = segments.last().copied().unwrap_or_default();
    if last.len() >= 4 && last[last.len() - 4..].eq_ignore_ascii_case(".git") {
        return reject(UrlReason::BadPath);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::UrlReason::*;
    use super::*;

    /// Own endpoints as a deployment would configure them.
    const OWN_HOSTS: &[&str] = &["connector.example.net", "*.lambda-url.eu-west-1.on.aws"];

    fn policy(allow: &str) -> UrlPolicy {
        UrlPolicy {
            allowlist: Allowlist::parse(allow).unwrap(),
            denied_hosts: OWN_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    fn parse(raw: &str) -> Result<InstanceUrl, UrlRejection> {
        InstanceUrl::parse(raw, &policy(""))
    }

    fn reason(raw: &str) -> Option<UrlReason> {
        parse(raw).err().map(|r| r.reason)
    }

    /// Every row of the table in security policy B, plus its reason here.
    const POLICY_B_TABLE: &[(&str, UrlReason)] = &[
        ("https://127.1", BadHost),
        ("https://127.0.1", BadHost),
        ("https://0177.0.0.1", BadHost),
        ("https://0177.1", BadHost),
        ("https://017700000001", BadHost),
        ("https://0x7f.0.0.1", BadHost),
        ("https://0x7f.1", BadHost),
        ("https://0x7f000001", BadHost),
        ("https://2130706433", BadHost),
        ("https://127.000.000.001", BadHost),
        ("https://127%2e0%2e0%2e1", BadCharacters),
        ("https://①②⑦.⓪.⓪.①", BadCharacters),
        ("https://0", BadHost),
        ("https://0x0", BadHost),
        ("https://4294967295", BadHost),
        ("https://0xA9FEA9FE", BadHost),
        ("https://2852039166", BadHost),
        ("https://0251.0376.0251.0376", BadHost),
        ("https://[::ffff:127.0.0.1]", IpLiteralNotPublic),
        ("https://[::127.0.0.1]", IpLiteralNotPublic),
        ("https://ｇｉｔｌａｂ.com", BadCharacters),
        ("https://ⓖⓘⓣⓛⓐⓑ.com", BadCharacters),
        ("https://gitlab%2eexample%2ecom", BadCharacters),
        ("https://gitlаb.com", BadCharacters),
        ("https:gitlab.example.com", NotHttps),
        ("https:///gitlab.example.com", NotHttps),
        ("https:\\\\gitlab.example.com", BadCharacters),
        ("https://evil.test\\@gitlab.example.com", HasCredentials),
        ("https://@gitlab.example.com", HasCredentials),
        ("https://gitlab.exa\tmple.com", BadCharacters),
        ("https://gitlab.example.com\n", BadCharacters),
        (" https://gitlab.example.com ", BadCharacters),
        ("https://gitlab.example.com:", BadPort),
        ("https://gitlab.example.com:08443", BadPort),
        ("https://example.com/gitlab/../admin", BadPath),
        ("https://example.com/gitlab/%2e%2e/admin", BadCharacters),
        ("https://gitlab.example.com.", BadHost),
        ("https://[fe80::1%25eth0]", BadCharacters),
        ("https://0x41414141A9FEA9FE", BadHost),
        ("https://7147006462", BadHost),
        ("https://425.510.425.510", BadHost),
        ("https://1.2.3.4.5", BadHost),
        ("https://256.256.256.256", BadHost),
    ];

    #[test]
    fn policy_b_table_rows_are_rejected_with_their_reason() {
        for (raw, expected) in POLICY_B_TABLE {
            assert_eq!(reason(raw), Some(*expected), "{raw:?}");
            // The allowlist cannot rescue any of them, not even with everything allowed.
            let everything = InstanceUrl::parse(raw, &policy("0.0.0.0/0,::/0"));
            if *expected != IpLiteralNotPublic {
                assert_eq!(everything.err().map(|r| r.reason), Some(*expected), "{raw:?}");
            }
        }
    }

    const REJECTED: &[(&str, UrlReason)] = &[
        // Length and characters.
        ("https://gitlab.com/a b", BadCharacters),
        ("https://gitlab.com/\0", BadCharacters),
        ("https://gitlab.com/\x7f", BadCharacters),
        ("https://gitlab.com/\x1b[0m", BadCharacters),
        ("https://gitlab.com/é", BadCharacters),
        ("https://gitlab.com/a\r\nHost: x", BadCharacters),
        ("https://gitlab.com\\", BadCharacters),
        ("https://gitlab.com/%41", BadCharacters),
        ("https://gitlab.com/%", BadCharacters),
        ("\u{feff}https://gitlab.com", BadCharacters),
        ("https://gitlab.com\u{3002}com", BadCharacters),
        ("https://[fe80::1%eth0]", BadCharacters),
        ("http://gitlab.com/%zz", BadCharacters),
        // Precedence among the raw checks.
        ("http://user@gitlab.com", HasCredentials),
        ("https://gitlab.com?x=1@y", HasCredentials),
        ("https://gitlab.com?x=%41", HasQueryOrFragment),
        ("gitlab.com#x", HasQueryOrFragment),
        ("https://gitlab.com/ @", BadCharacters),
        // Scheme.
        ("http://gitlab.example.com", NotHttps),
        ("HTTP://gitlab.example.com", NotHttps),
        ("gitlab.example.com", NotHttps),
        ("gitlab.example.com/api/v4", NotHttps),
        ("//gitlab.example.com", NotHttps),
        ("ftp://gitlab.example.com", NotHttps),
        ("ws://gitlab.example.com", NotHttps),
        ("wss://gitlab.example.com", NotHttps),
        ("httpss://gitlab.example.com", NotHttps),
        ("hxxps://gitlab.example.com", NotHttps),
        ("https//gitlab.example.com", NotHttps),
        ("https:/gitlab.example.com", NotHttps),
        ("https:", NotHttps),
        ("https:/", NotHttps),
        ("https", NotHttps),
        ("https:///x", NotHttps),
        ("https:////gitlab.example.com", NotHttps),
        ("javascript:alert(1)", NotHttps),
        ("file:///etc/passwd", NotHttps),
        ("data:text/html,x", NotHttps),
        ("git+https://gitlab.example.com", NotHttps),
        ("ssh://git@gitlab.example.com", HasCredentials),
        // Credentials.
        ("https://user:pass@gitlab.com", HasCredentials),
        ("https://user@gitlab.com", HasCredentials),
        ("https://:@gitlab.com", HasCredentials),
        ("https://gitlab.com/@x", HasCredentials),
        ("https://gitlab.com@evil.com", HasCredentials),
        ("https://oauth2:glpat-xxxxxxxxxxxxxxxxxxxx@gitlab.com", HasCredentials),
        // Query and fragment.
        ("https://gitlab.com?", HasQueryOrFragment),
        ("https://gitlab.com/?a=b", HasQueryOrFragment),
        ("https://gitlab.com#", HasQueryOrFragment),
        ("https://gitlab.com/#frag", HasQueryOrFragment),
        ("https://gitlab.com/x?y#z", HasQueryOrFragment),
        ("https://gitlab.com/api/v4?private_token=x", HasQueryOrFragment),
        // Host syntax.
        ("https://", BadHost),
        ("https://:8443", BadHost),
        ("https://:8443/gitlab", BadHost),
        ("https://gitlab", BadHost),
        ("https://gitlab/", BadHost),
        ("https://gitlab:8443", BadHost),
        ("https://com", BadHost),
        ("https://exa_mple.com", BadHost),
        ("https://_dmarc.example.com", BadHost),
        ("https://-gitlab.com", BadHost),
        ("https://gitlab-.com", BadHost),
        ("https://gitlab.-com", BadHost),
        ("https://a..b.com", BadHost),
        ("https://.gitlab.com", BadHost),
        ("https://gitlab.com..", BadHost),
        ("https://gitlab.123", BadHost),
        ("https://gitlab.0x1f", BadHost),
        ("https://gitlab.0xzz", BadHost),
        ("https://gitlab.0X1F", BadHost),
        ("https://1.2.3", BadHost),
        ("https://1.2.3.", BadHost),
        ("https://1.2.3.4.", BadHost),
        ("https://01.2.3.4", BadHost),
        ("https://1.2.3.04", BadHost),
        ("https://1.2.3.4.5.6", BadHost),
        ("https://gitlab.example.com:443:1", BadHost),
        ("https://2001:db8::1", BadHost),
        ("https://2001:4860::1", BadHost),
        ("https://::1", BadHost),
        ("https://[2001:4860::1", BadHost),
        ("https://2001:4860::1]", BadHost),
        ("https://[2001:4860::1]x", BadHost),
        ("https://[2001:4860::1]]", BadHost),
        ("https://[2001:4860::1][", BadHost),
        ("https://[[2001:4860::1]]", BadHost),
        ("https://[1.2.3.4]", BadHost),
        ("https://[8.8.8.8]", BadHost),
        ("https://[v1.x]", BadHost),
        ("https://[]", BadHost),
        ("https://[:]", BadHost),
        ("https://[2001:4860::g]", BadHost),
        ("https://[2001:4860:0:0:0:0:0:0:1]", BadHost),
        ("https://gitlab.com[x]", BadHost),
        ("https://gitlab.com!", BadHost),
        ("https://gitlab$.com", BadHost),
        ("https://gi*tlab.com", BadHost),
        ("https://*.gitlab.com", BadHost),
        ("https://gitlab.com;x", BadHost),
        ("https://gitlab.com,x.com", BadHost),
        ("https://gitlab.com&x", BadHost),
        ("https://gitlab.com'", BadHost),
        ("https://gitlab.com\"", BadHost),
        ("https://gitlab.com<x>", BadHost),
        ("https://gitlab.com=", BadHost),
        ("https://gitlab.com+x", BadHost),
        ("https://gitlab.com(x)", BadHost),
        ("https://gitlab.com~", BadHost),
        ("https://gitlab.com`", BadHost),
        ("https://gitlab.com{x}", BadHost),
        ("https://gitlab.com|x", BadHost),
        ("https://gitlab.com^", BadHost),
        ("https://xn--.com", BadHost),
        ("https://xn--a.com", BadHost),
        // Name denylist.
        ("https://localhost", DeniedName),
        ("https://LOCALHOST", DeniedName),
        ("https://localhost/", DeniedName),
        ("https://localhost:8443", DeniedName),
        ("https://foo.localhost", DeniedName),
        ("https://a.b.localhost", DeniedName),
        ("https://gitlab.local", DeniedName),
        ("https://GitLab.Local", DeniedName),
        ("https://a.b.localdomain", DeniedName),
        ("https://gitlab.internal", DeniedName),
        ("https://gitlab.corp.internal", DeniedName),
        ("https://ip-10-0-0-1.ec2.internal", DeniedName),
        ("https://metadata.google.internal", DeniedName),
        ("https://nas.home.arpa", DeniedName),
        ("https://home.arpa", DeniedName),
        ("https://connector.example.net", DeniedName),
        ("https://CONNECTOR.example.net/gitlab", DeniedName),
        ("https://abc123.lambda-url.eu-west-1.on.aws", DeniedName),
        ("https://lambda-url.eu-west-1.on.aws", DeniedName),
        // Non-public IP literals.
        ("https://127.0.0.1", IpLiteralNotPublic),
        ("https://127.0.0.1:8443", IpLiteralNotPublic),
        ("https://0.0.0.0", IpLiteralNotPublic),
        ("https://10.0.0.1", IpLiteralNotPublic),
        ("https://100.64.0.1", IpLiteralNotPublic),
        ("https://169.254.169.254", IpLiteralNotPublic),
        ("https://172.16.0.1", IpLiteralNotPublic),
        ("https://172.31.255.255", IpLiteralNotPublic),
        ("https://192.0.0.1", IpLiteralNotPublic),
        ("https://192.0.2.1", IpLiteralNotPublic),
        ("https://192.88.99.1", IpLiteralNotPublic),
        ("https://192.168.1.1", IpLiteralNotPublic),
        ("https://198.18.0.1", IpLiteralNotPublic),
        ("https://198.51.100.1", IpLiteralNotPublic),
        ("https://203.0.113.9", IpLiteralNotPublic),
        ("https://224.0.0.1", IpLiteralNotPublic),
        ("https://240.0.0.1", IpLiteralNotPublic),
        ("https://255.255.255.255", IpLiteralNotPublic),
        ("https://[::]", IpLiteralNotPublic),
        ("https://[::1]", IpLiteralNotPublic),
        ("https://[::1]:8443", IpLiteralNotPublic),
        ("https://[0:0:0:0:0:0:0:1]", IpLiteralNotPublic),
        ("https://[::ffff:7f00:1]", IpLiteralNotPublic),
        ("https://[::ffff:169.254.169.254]", IpLiteralNotPublic),
        ("https://[::ffff:a9fe:a9fe]", IpLiteralNotPublic),
        ("https://[::8.8.8.8]", IpLiteralNotPublic),
        ("https://[::ffff:0:808:808]", IpLiteralNotPublic),
        ("https://[64:ff9b::a9fe:a9fe]", IpLiteralNotPublic),
        ("https://[64:ff9b::8.8.8.8]", IpLiteralNotPublic),
        ("https://[fd00:ec2::254]", IpLiteralNotPublic),
        ("https://[FD00:EC2::254]", IpLiteralNotPublic),
        ("https://[fc00::1]", IpLiteralNotPublic),
        ("https://[fe80::1]", IpLiteralNotPublic),
        ("https://[fec0::1]", IpLiteralNotPublic),
        ("https://[ff02::1]", IpLiteralNotPublic),
        ("https://[100::1]", IpLiteralNotPublic),
        ("https://[2001::1]", IpLiteralNotPublic),
        ("https://[2001:db8::1]", IpLiteralNotPublic),
        ("https://[2002:7f00:1::]", IpLiteralNotPublic),
        ("https://[3fff::1]", IpLiteralNotPublic),
        ("https://[4000::1]", IpLiteralNotPublic),
        // Non-public literal wins over a bad port (host is checked first).
        ("https://127.0.0.1:80", IpLiteralNotPublic),
        // Ports.
        ("https://gitlab.com:0", BadPort),
        ("https://gitlab.com:1", BadPort),
        ("https://gitlab.com:22", BadPort),
        ("https://gitlab.com:80", BadPort),
        ("https://gitlab.com:442", BadPort),
        ("https://gitlab.com:444", BadPort),
        ("https://gitlab.com:1023", BadPort),
        ("https://gitlab.com:65536", BadPort),
        ("https://gitlab.com:99999", BadPort),
        ("https://gitlab.com:123456", BadPort),
        ("https://gitlab.com:0443", BadPort),
        ("https://gitlab.com:00443", BadPort),
        ("https://gitlab.com:+443", BadPort),
        ("https://gitlab.com:-1", BadPort),
        ("https://gitlab.com:http", BadPort),
        ("https://gitlab.com:443x", BadPort),
        ("https://gitlab.com:0x1bb", BadPort),
        ("https://gitlab.com:/", BadPort),
        ("https://gitlab.com:/gitlab", BadPort),
        ("https://[2001:4860::1]:", BadPort),
        ("https://[2001:4860::1]:80", BadPort),
        ("https://8.8.8.8:80", BadPort),
        // Paths.
        ("https://gitlab.com//", BadPath),
        ("https://gitlab.com///", BadPath),
        ("https://gitlab.com/a//b", BadPath),
        ("https://gitlab.com/a/b//", BadPath),
        ("https://gitlab.com/.", BadPath),
        ("https://gitlab.com/..", BadPath),
        ("https://gitlab.com/./", BadPath),
        ("https://gitlab.com/a/./b", BadPath),
        ("https://gitlab.com/a/../b", BadPath),
        ("https://gitlab.com/a/b/c/d/e/f", BadPath),
        ("https://gitlab.com/a/b/c/d/e/f/", BadPath),
        ("https://gitlab.com/-", BadPath),
        ("https://gitlab.com/-/", BadPath),
        ("https://gitlab.com/gitlab/-/x", BadPath),
        ("https://gitlab.com/group/project/-/merge_requests", BadPath),
        ("https://gitlab.com/group/project.git", BadPath),
        ("https://gitlab.com/group/project.GIT", BadPath),
        ("https://gitlab.com/group/project.git/", BadPath),
        ("https://gitlab.com/.git", BadPath),
        ("https://gitlab.com/a:b", BadPath),
        ("https://gitlab.com/a;b", BadPath),
        ("https://gitlab.com/a,b", BadPath),
        ("https://gitlab.com/a!b", BadPath),
        ("https://gitlab.com/a$b", BadPath),
        ("https://gitlab.com/a'b", BadPath),
        ("https://gitlab.com/a(b)", BadPath),
        ("https://gitlab.com/a*b", BadPath),
        ("https://gitlab.com/a+b", BadPath),
        ("https://gitlab.com/a=b", BadPath),
        ("https://gitlab.com/a&b", BadPath),
        ("https://gitlab.com/a<b", BadPath),
        ("https://gitlab.com/a>b", BadPath),
        ("https://gitlab.com/a\"b", BadPath),
        ("https://gitlab.com/a`b", BadPath),
        ("https://gitlab.com/a{b}", BadPath),
        ("https://gitlab.com/a|b", BadPath),
        ("https://gitlab.com/a^b", BadPath),
        ("https://gitlab.com/a[b]", BadPath),
        ("https://gitlab.com/[::1]", BadPath),
        // API paths.
        ("https://gitlab.com/api/v4", HasApiPath),
        ("https://gitlab.com/api/v4/", HasApiPath),
        ("https://gitlab.com/API/V4", HasApiPath),
        ("https://gitlab.com/Api/v4/", HasApiPath),
        ("https://example.com/gitlab/api/v4", HasApiPath),
        ("https://example.com:8443/gitlab/api/v4/", HasApiPath),
        ("https://gitlab.com/api/v4/projects", HasApiPath),
        ("https://gitlab.com/a/b/c/d/e/api/v4", HasApiPath),
        ("https://[2001:4860::1]/api/v4", HasApiPath),
        ("https://8.8.8.8/api/v4", HasApiPath),
    ];

    #[test]
    fn rejected_inputs_and_their_reasons() {
        for (raw, expected) in REJECTED {
            assert_eq!(reason(raw), Some(*expected), "{raw:?}");
        }
    }

    /// (raw input, expected base_url).
    const ACCEPTED: &[(&str, &str)] = &[
        ("https://gitlab.com", "https://gitlab.com"),
        ("https://gitlab.com/", "https://gitlab.com"),
        ("HTTPS://GitLab.Example.COM", "https://gitlab.example.com"),
        ("HtTpS://gitlab.example.com/GitLab/", "https://gitlab.example.com/GitLab"),
        ("https://gitlab.example.com:443", "https://gitlab.example.com"),
        ("https://gitlab.example.com:443/", "https://gitlab.example.com"),
        ("https://gitlab.example.com:1024", "https://gitlab.example.com:1024"),
        ("https://gitlab.example.com:8443", "https://gitlab.example.com:8443"),
        ("https://gitlab.example.com:65535/", "https://gitlab.example.com:65535"),
        ("https://example.com/gitlab", "https://example.com/gitlab"),
        ("https://example.com/gitlab/", "https://example.com/gitlab"),
        ("https://example.com/a/b/c/d/e", "https://example.com/a/b/c/d/e"),
        ("https://example.com/a/b/c/d/e/", "https://example.com/a/b/c/d/e"),
        ("https://example.com/Gitlab_CE-1.0~x", "https://example.com/Gitlab_CE-1.0~x"),
        ("https://example.com/~group", "https://example.com/~group"),
        ("https://example.com/...", "https://example.com/..."),
        ("https://example.com/.well-known", "https://example.com/.well-known"),
        ("https://example.com/-x", "https://example.com/-x"),
        ("https://example.com/git", "https://example.com/git"),
        ("https://example.com/project.gitx", "https://example.com/project.gitx"),
        ("https://example.com/a.git/b", "https://example.com/a.git/b"),
        ("https://example.com/api", "https://example.com/api"),
        ("https://example.com/v4", "https://example.com/v4"),
        ("https://example.com/api/v3", "https://example.com/api/v3"),
        ("https://example.com/apiv4", "https://example.com/apiv4"),
        ("https://example.com/api/v44", "https://example.com/api/v44"),
        ("https://example.com/v4/api", "https://example.com/v4/api"),
        ("https://8.8.8.8", "https://8.8.8.8"),
        ("https://1.1.1.1/", "https://1.1.1.1"),
        ("https://8.8.8.8:8443/gitlab", "https://8.8.8.8:8443/gitlab"),
        ("https://1.0.0.0", "https://1.0.0.0"),
        ("https://223.255.255.255", "https://223.255.255.255"),
        ("https://[2001:4860::1]", "https://[2001:4860::1]"),
        ("https://[2001:4860:0:0:0:0:0:1]", "https://[2001:4860::1]"),
        ("https://[2001:4860::ABCD]", "https://[2001:4860::abcd]"),
        ("https://[::ffff:8.8.8.8]", "https://[::ffff:808:808]"),
        ("https://[2001:4860::1]:8443/gitlab/", "https://[2001:4860::1]:8443/gitlab"),
        ("https://[2000::]", "https://[2000::]"),
        ("https://[3fff:1000::1]", "https://[3fff:1000::1]"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ("https://gitlab-ce.my-company.co.uk", "https://gitlab-ce.my-company.co.uk"),
        ("https://a.b", "https://a.b"),
        ("https://123.example.com", "https://123.example.com"),
        ("https://1.2.3.4x", "https://1.2.3.4x"),
        ("https://a--b.example.com", "https://a--b.example.com"),
        ("https://localhost.example.com", "https://localhost.example.com"),
        ("https://local.example.com", "https://local.example.com"),
        ("https://internal.example.com", "https://internal.example.com"),
        ("https://home.arpa.example.com", "https://home.arpa.example.com"),
        ("https://x.connector.example.net", "https://x.connector.example.net"),
        ("https://example.net", "https://example.net"),
        ("https://on.aws", "https://on.aws"),
    ];

    #[test]
    fn accepted_inputs_normalise() {
        for (raw, base) in ACCEPTED {
            let url = parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e:?}"));
            assert_eq!(url.base_url(), *base, "{raw:?}");
            assert_eq!(url.to_string(), *base, "{raw:?}");
            assert_eq!(url.api_url(), format!("{base}/api/v4"), "{raw:?}");
            assert!(!url.is_allowlisted(), "{raw:?}");
            assert_eq!(parse(base), Ok(url.clone()), "{raw:?} re-parsed");
            assert_eq!(parse(&format!("{base}/")), Ok(url), "{raw:?} with slash");
        }
    }

    #[test]
    fn length_limits() {
        let head = "https://example.com/";
        let at_limit = format!("{head}{}", "a".repeat(MAX_URL_LEN - head.len()));
        assert_eq!(at_limit.len(), 2048);
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(reason(&over), Some(TooLong));
        // Length is checked before characters.
        assert_eq!(reason(&" ".repeat(3000)), Some(TooLong));
        assert_eq!(reason(&"é".repeat(1025)), Some(TooLong));
        // Empty input is reported as a missing host, with its own message.
        let empty = parse("").err().unwrap();
        assert_eq!(empty.reason, BadHost);
        assert_eq!(empty.message, "The instance URL is empty.");

        let label63 = "a".repeat(63);
        assert!(parse(&format!("https://{label63}.com")).is_ok());
        assert_eq!(reason(&format!("https://a{label63}.com")), Some(BadHost));
        let host253 = format!("{0}.{0}.{0}.{1}", label63, "a".repeat(61));
        assert_eq!(host253.len(), 253);
        assert!(parse(&format!("https://{host253}")).is_ok());
        assert_eq!(reason(&format!("https://a{host253}")), Some(BadHost));
        assert_eq!(reason(&format!("https://{host253}.")), Some(BadHost));
    }

    #[test]
    fn accessors() {
        let url = parse("https://GitLab.Example.com:8443/Group/Sub/").unwrap();
        assert_eq!(url.host(), &InstanceHost::Domain("gitlab.example.com".into()));
        assert_eq!(url.host_for_url(), "gitlab.example.com");
        assert_eq!(url.host_for_resolve(), "gitlab.example.com");
        assert_eq!(url.ip_literal(), None);
        assert_eq!(url.port(), 8443);
        assert_eq!(url.explicit_port(), Some(8443));
        assert_eq!(url.path_prefix(), "/Group/Sub");
        assert_eq!(url.origin(), "https://gitlab.example.com:8443");
        assert_eq!(url.base_url(), "https://gitlab.example.com:8443/Group/Sub");
        assert_eq!(url.api_url(), "https://gitlab.example.com:8443/Group/Sub/api/v4");

        let url = parse("https://example.com/gitlab").unwrap();
        assert_eq!(url.port(), 443);
        assert_eq!(url.explicit_port(), None);
        assert_eq!(url.path_prefix(), "/gitlab");
        assert_eq!(url.origin(), "https://example.com");
        assert_eq!(url.api_url(), "https://example.com/gitlab/api/v4");

        let url = parse("https://gitlab.com:443").unwrap();
        assert_eq!(url.port(), 443);
        assert_eq!(url.explicit_port(), None);
        assert_eq!(url.path_prefix(), "");
        assert_eq!(url.api_url(), "https://gitlab.com/api/v4");

        let url = parse("https://8.8.8.8:8443").unwrap();
        assert_eq!(url.host(), &InstanceHost::Ipv4(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(url.host_for_url(), "8.8.8.8");
        assert_eq!(url.host_for_resolve(), "8.8.8.8");
        assert_eq!(url.ip_literal(), Some(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))));
        assert_eq!(url.origin(), "https://8.8.8.8:8443");

        let url = parse("https://[2001:4860:0::1]").unwrap();
        let v6: Ipv6Addr = "2001:4860::1".parse().unwrap();
        assert_eq!(url.host(), &InstanceHost::Ipv6(v6));
        assert_eq!(url.host_for_url(), "[2001:4860::1]");
        assert_eq!(url.host_for_resolve(), "2001:4860::1");
        assert_eq!(url.ip_literal(), Some(IpAddr::V6(v6)));
        assert_eq!(url.origin(), "https://[2001:4860::1]");

        let url = parse("https://[::ffff:8.8.8.8]").unwrap();
        assert_eq!(url.host_for_url(), "[::ffff:808:808]");
        assert_eq!(url.host_for_resolve(), "::ffff:808:808");
    }

    /// (allowlist, raw, Ok((base_url, allowlisted)) or Err(reason)).
    #[allow(clippy::type_complexity)]
    const WITH_ALLOWLIST: &[(&str, &str, Result<(&str, bool), UrlReason>)] = &[
        ("127.0.0.1/32", "https://127.0.0.1:8443", Ok(("https://127.0.0.1:8443", true))),
        ("127.0.0.1/32", "https://127.0.0.1", Ok(("https://127.0.0.1", true))),
        ("127.0.0.1/32", "https://127.0.0.1:8443/gitlab/", Ok(("https://127.0.0.1:8443/gitlab", true))),
        ("127.0.0.1", "https://127.0.0.1:8443", Ok(("https://127.0.0.1:8443", true))),
        ("127.0.0.1/32", "https://127.0.0.2:8443", Err(IpLiteralNotPublic)),
        ("127.0.0.0/8", "https://127.0.0.2:8443", Ok(("https://127.0.0.2:8443", true))),
        ("127.0.0.1/32", "https://[::ffff:127.0.0.1]:8443", Ok(("https://[::ffff:7f00:1]:8443", true))),
        ("127.0.0.1/32", "https://[::127.0.0.1]:8443", Err(IpLiteralNotPublic)),
        ("127.0.0.1/32", "https://[::1]:8443", Err(IpLiteralNotPublic)),
        ("::1/128", "https://[::1]:8443", Ok(("https://[::1]:8443", true))),
        ("::1", "https://[0:0::1]", Ok(("https://[::1]", true))),
        ("fd00::/8", "https://[fd00:ec2::254]", Ok(("https://[fd00:ec2::254]", true))),
        ("10.0.0.0/8", "https://10.1.2.3", Ok(("https://10.1.2.3", true))),
        ("10.0.0.0/8", "https://11.0.0.1", Ok(("https://11.0.0.1", false))),
        ("10.0.0.0/8", "https://8.8.8.8", Ok(("https://8.8.8.8", false))),
        ("0.0.0.0/0", "https://8.8.8.8", Ok(("https://8.8.8.8", true))),
        // The allowlist never relaxes scheme, port, path, character or syntax rules.
        ("127.0.0.1/32", "http://127.0.0.1:8443", Err(NotHttps)),
        ("127.0.0.1/32", "127.0.0.1:8443", Err(NotHttps)),
        ("127.0.0.1/32", "https://127.0.0.1:80", Err(BadPort)),
        ("127.0.0.1/32", "https://127.0.0.1:1023", Err(BadPort)),
        ("127.0.0.1/32", "https://127.0.0.1:", Err(BadPort)),
        ("127.0.0.1/32", "https://127.0.0.1:8443/api/v4", Err(HasApiPath)),
        ("127.0.0.1/32", "https://127.0.0.1:8443/a/../b", Err(BadPath)),
        ("127.0.0.1/32", "https://127.0.0.1:8443/x.git", Err(BadPath)),
        ("127.0.0.1/32", "https://127.1:8443", Err(BadHost)),
        ("127.0.0.1/32", "https://2130706433:8443", Err(BadHost)),
        ("127.0.0.1/32", "https://0177.0.0.1:8443", Err(BadHost)),
        ("127.0.0.1/32", "https://0x7f.0.0.1:8443", Err(BadHost)),
        ("127.0.0.1/32", "https://127.0.0.1.:8443", Err(BadHost)),
        ("127.0.0.1/32", "https://127.0.0.1:8443/%2e", Err(BadCharacters)),
        ("127.0.0.1/32", "https://127.0.0.1:8443/ ", Err(BadCharacters)),
        ("127.0.0.1/32", "https://user@127.0.0.1:8443", Err(HasCredentials)),
        ("127.0.0.1/32", "https://127.0.0.1:8443/?x", Err(HasQueryOrFragment)),
        ("127.0.0.1/32", "https://localhost:8443", Err(DeniedName)),
        ("::1/128", "https://::1", Err(BadHost)),
        // Allowlisted names bypass the denylist and the single-label rule, exactly.
        ("localhost", "https://localhost:8443", Ok(("https://localhost:8443", true))),
        ("localhost", "https://LocalHost:8443/", Ok(("https://localhost:8443", true))),
        ("localhost", "https://localhost", Ok(("https://localhost", true))),
        ("localhost", "https://localhost/gitlab", Ok(("https://localhost/gitlab", true))),
        ("localhost", "https://foo.localhost", Err(DeniedName)),
        ("localhost", "https://localhost2", Err(BadHost)),
        ("localhost", "http://localhost", Err(NotHttps)),
        ("localhost", "https://localhost:22", Err(BadPort)),
        ("localhost", "https://localhost./", Err(BadHost)),
        ("localhost", "https://localhost/x.git", Err(BadPath)),
        ("localhost", "https://localhost/api/v4", Err(HasApiPath)),
        ("localhost", "https://127.0.0.1", Err(IpLiteralNotPublic)),
        ("localhost", "https://[::1]", Err(IpLiteralNotPublic)),
        ("gitlab", "https://gitlab", Ok(("https://gitlab", true))),
        ("gitlab", "https://gitlab2", Err(BadHost)),
        (
            "gitlab.corp.internal",
            "https://gitlab.corp.internal/gitlab",
            Ok(("https://gitlab.corp.internal/gitlab", true)),
        ),
        ("gitlab.corp.internal", "https://other.corp.internal", Err(DeniedName)),
        ("gitlab.corp.internal", "https://x.gitlab.corp.internal", Err(DeniedName)),
        ("gitlab.example.com", "https://gitlab.example.com", Ok(("https://gitlab.example.com", true))),
        ("gitlab.example.com", "https://www.gitlab.example.com", Ok(("https://www.gitlab.example.com", false))),
        ("connector.example.net", "https://connector.example.net", Ok(("https://connector.example.net", true))),
        ("localhost,127.0.0.1/32", "https://localhost:8443", Ok(("https://localhost:8443", true))),
        ("localhost,127.0.0.1/32", "https://127.0.0.1:8443", Ok(("https://127.0.0.1:8443", true))),
    ];

    #[test]
    fn allowlist_interplay() {
        for (allow, raw, expected) in WITH_ALLOWLIST {
            let got = InstanceUrl::parse(raw, &policy(allow));
            match (got, expected) {
                (Ok(url), Ok((base, allowlisted))) => {
                    assert_eq!(url.base_url(), *base, "{allow} / {raw}");
                    assert_eq!(url.is_allowlisted(), *allowlisted, "{allow} / {raw}");
                    assert_eq!(InstanceUrl::parse(base, &policy(allow)), Ok(url), "{allow} / {raw}");
                }
                (Err(rejection), Err(reason)) => {
                    assert_eq!(rejection.reason, *reason, "{allow} / {raw}");
                }
                (got, want) => panic!("{allow} / {raw}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn denied_hosts_from_policy() {
        let policy = UrlPolicy {
            allowlist: Allowlist::default(),
            denied_hosts: vec![
                "API.Connector.Example.com".into(),
                "*.execute-api.eu-west-1.amazonaws.com".into(),
                "8.8.4.4".into(),
            ],
        };
        let cases: &[(&str, Option<UrlReason>)] = &[
            ("https://api.connector.example.com", Some(DeniedName)),
            ("https://x.api.connector.example.com", None),
            ("https://connector.example.com", None),
            ("https://abc.execute-api.eu-west-1.amazonaws.com", Some(DeniedName)),
            ("https://execute-api.eu-west-1.amazonaws.com", Some(DeniedName)),
            ("https://xexecute-api.eu-west-1.amazonaws.com", None),
            ("https://8.8.4.4", Some(DeniedName)),
            ("https://8.8.8.8", None),
        ];
        for (raw, expected) in cases {
            let got = InstanceUrl::parse(raw, &policy).err().map(|r| r.reason);
            assert_eq!(got, *expected, "{raw}");
        }
    }

    #[test]
    fn reasons_and_default_messages() {
        let codes: Vec<&str> = UrlReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "not_https",
                "has_api_path",
                "has_credentials",
                "has_query_or_fragment",
                "bad_host",
                "bad_port",
                "bad_path",
                "ip_literal_not_public",
                "private_address",
                "denied_name",
                "dns_failure",
                "too_long",
                "bad_characters",
            ]
        );
        for reason in UrlReason::ALL {
            let rejection = UrlRejection::new(reason);
            assert_eq!(rejection.reason, reason);
            assert_eq!(reason.to_string(), reason.as_str());
            assert!(rejection.message.ends_with('.'), "{reason}");
            assert_eq!(rejection.to_string(), rejection.message);
            let hint = rejection.hint.unwrap_or_default();
            assert!(hint.ends_with('.'), "{reason}");
        }
        assert_eq!(
            UrlRejection::new(HasApiPath).hint.as_deref(),
            Some(
                "Enter the instance's base URL without /api/v4, for example https://gitlab.example.com or https://example.com/gitlab."
            )
        );
        let blocked = UrlRejection::from_blocked(address::BlockedAddress { rule: "loopback address" });
        assert_eq!(blocked.reason, PrivateAddress);
        assert!(blocked.message.contains("loopback address"));
        let none =
            UrlRejection::from_blocked(address::check_resolved(false, &[], &Allowlist::default()).err().unwrap());
        assert_eq!(none.reason, DnsFailure);
    }

    #[test]
    fn rejection_text_never_echoes_input_or_address() {
        let all = POLICY_B_TABLE.iter().chain(REJECTED);
        for (raw, _) in all {
            let rejection = parse(raw).err().unwrap();
            // Hints are fixed text per reason (they may show example URLs); only the
            // message could carry anything input-dependent.
            assert_eq!(rejection.hint, UrlRejection::new(rejection.reason).hint, "{raw:?}");
            let text = rejection.message;
            assert!(raw.len() < 12 || !text.contains(raw), "{raw:?}: {text}");
            let host = raw.trim_start_matches("https://").split(['/', ':']).next().unwrap_or("");
            if host.len() > 3 && host.bytes().any(|b| b.is_ascii_digit()) {
                assert!(!text.contains(host), "{raw:?}: {text}");
            }
        }
        let literal = parse("https://169.254.169.254").err().unwrap();
        assert!(literal.message.contains("link-local address"));
        assert!(!literal.message.contains("169.254"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        const DENIED_TLDS: &[&str] = &["localhost", "local", "localdomain", "internal", "arpa"];

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?".prop_filter("punycode needs real encoding", |l| !l.starts_with("xn--"))
        }

        fn host() -> impl Strategy<Value = String> {
            (
                proptest::collection::vec(label(), 1..4),
                "[a-z]{2,8}".prop_filter("denylisted", |t| !DENIED_TLDS.contains(&t.as_str())),
            )
                .prop_map(|(mut labels, tld)| {
                    labels.push(tld);
                    labels.join(".")
                })
        }

        fn segment() -> impl Strategy<Value = String> {
            "[A-Za-z0-9._~-]{1,10}"
                .prop_filter("dot segments and route separator", |s| !matches!(s.as_str(), "." | ".." | "-"))
        }

        fn segments() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec(segment(), 0..=5).prop_filter("api path or .git", |segs| {
                let api = segs.windows(2).any(|w| w[0].eq_ignore_ascii_case("api") && w[1].eq_ignore_ascii_case("v4"));
                let git = segs.last().is_some_and(|s| s.to_ascii_lowercase().ends_with(".git"));
                !api && !git
            })
        }

        fn port() -> impl Strategy<Value = Option<u16>> {
            prop_oneof![Just(None), Just(Some(443)), (1024u16..=65535).prop_map(Some)]
        }

        /// (raw URL with random case in scheme and host, expected base_url).
        fn valid_url() -> impl Strategy<Value = (String, String)> {
            (
                prop::sample::select(vec!["https", "HTTPS", "Https", "hTtPs"]),
                host(),
                any::<u64>(),
                port(),
                segments(),
                any::<bool>(),
            )
                .prop_map(|(scheme, host, case_bits, port, segs, slash)| {
                    let mixed: String = host
                        .chars()
                        .enumerate()
                        .map(|(i, c)| if case_bits >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                        .collect();
                    let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
                    let path: String = segs.iter().map(|s| format!("/{s}")).collect();
                    let tail = if slash { "/" } else { "" };
                    let raw = format!("{scheme}://{mixed}{port_text}{path}{tail}");
                    let norm_port = match port {
                        Some(p) if p != 443 => format!(":{p}"),
                        _ => String::new(),
                    };
                    let expected = format!("https://{host}{norm_port}{path}");
                    (raw, expected)
                })
        }

        /// A character the raw checks always refuse, with the reason they give.
        fn forbidden_char() -> impl Strategy<Value = (char, UrlReason)> {
            prop_oneof![
                (0u8..=0x20).prop_map(|b| (char::from(b), UrlReason::BadCharacters)),
                Just(('\x7f', UrlReason::BadCharacters)),
                any::<char>().prop_filter("non-ASCII", |c| !c.is_ascii()).prop_map(|c| (c, UrlReason::BadCharacters)),
                Just(('\\', UrlReason::BadCharacters)),
                Just(('%', UrlReason::BadCharacters)),
                Just(('@', UrlReason::HasCredentials)),
                Just(('?', UrlReason::HasQueryOrFragment)),
                Just(('#', UrlReason::HasQueryOrFragment)),
            ]
        }

        fn check_accepted(url: &InstanceUrl, policy: &UrlPolicy) -> Result<(), TestCaseError> {
            let base = url.base_url();
            prop_assert!(
                base.bytes().all(|b| b.is_ascii_alphanumeric() || b"./:_~[]-".contains(&b)),
                "unexpected character in {}",
                base
            );
            prop_assert!(base.starts_with("https://"));
            prop_assert!(!base.ends_with('/'));
            prop_assert_eq!(InstanceUrl::parse(&base, policy), Ok(url.clone()));
            prop_assert_eq!(url.api_url(), format!("{base}/api/v4"));
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn never_panics_on_arbitrary_strings(raw in any::<String>()) {
                let policy = UrlPolicy::default();
                if let Ok(url) = InstanceUrl::parse(&raw, &policy) {
                    check_accepted(&url, &policy)?;
                }
            }

            #[test]
            fn never_panics_on_url_like_strings(
                scheme in prop::sample::select(vec!["https://", "HTTPS://", "https:", "http://", ""]),
                rest in "[a-zA-Z0-9.:/\\[\\]_~@?#%!$&'()*+,;=-]{0,40}",
            ) {
                let raw = format!("{scheme}{rest}");
                let policy = UrlPolicy::default();
                if let Ok(url) = InstanceUrl::parse(&raw, &policy) {
                    check_accepted(&url, &policy)?;
                }
            }

            #[test]
            fn normaliser_is_idempotent_for_permissive_policy(
                rest in "[a-zA-Z0-9.:/\\[\\]_~-]{0,40}",
            ) {
                let policy = UrlPolicy {
                    allowlist: Allowlist::parse("0.0.0.0/0,::/0").unwrap(),
                    denied_hosts: Vec::new(),
                };
                if let Ok(url) = InstanceUrl::parse(&format!("https://{rest}"), &policy) {
                    check_accepted(&url, &policy)?;
                }
            }

            #[test]
            fn generated_valid_urls_are_accepted((raw, expected) in valid_url()) {
                let policy = UrlPolicy::default();
                let url = InstanceUrl::parse(&raw, &policy);
                prop_assert!(url.is_ok(), "{} rejected: {:?}", raw, url);
                let url = url.unwrap();
                prop_assert_eq!(url.base_url(), expected);
                let host = url.host_for_url();
                prop_assert_eq!(host.to_ascii_lowercase(), host);
                check_accepted(&url, &policy)?;
            }

            #[test]
            fn inserting_a_forbidden_character_is_rejected(
                (raw, _) in valid_url(),
                (c, reason) in forbidden_char(),
                at in any::<prop::sample::Index>(),
            ) {
                let mut bad = raw.clone();
                bad.insert(at.index(raw.len() + 1), c);
                let got = InstanceUrl::parse(&bad, &UrlPolicy::default());
                prop_assert_eq!(got.err().map(|r| r.reason), Some(reason), "{:?}", bad);
            }

            #[test]
            fn ipv4_literals_follow_classify(bits in any::<u32>(), port in port()) {
                let ip = Ipv4Addr::from(bits);
                let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
                let raw = format!("https://{ip}{port_text}");
                let got = InstanceUrl::parse(&raw, &UrlPolicy::default());
                match address::classify(IpAddr::V4(ip)) {
                    Ok(()) => prop_assert_eq!(got.map(|u| u.host().clone()), Ok(InstanceHost::Ipv4(ip))),
                    Err(_) => prop_assert_eq!(got.err().map(|r| r.reason), Some(UrlReason::IpLiteralNotPublic)),
                }
                let everything = UrlPolicy {
                    allowlist: Allowlist::parse("0.0.0.0/0").unwrap(),
                    denied_hosts: Vec::new(),
                };
                let url = InstanceUrl::parse(&raw, &everything);
                prop_assert!(url.as_ref().is_ok_and(InstanceUrl::is_allowlisted), "{:?}", url);
            }

            #[test]
            fn ipv6_literals_follow_classify(bits in any::<u128>(), prefix in prop::sample::select(vec![0u128, 0x2000 << 112, 0xfe80 << 112, 0xffff << 32])) {
                // Mix in prefixes so global unicast, link-local and mapped addresses all occur.
                let ip = Ipv6Addr::from(prefix | (bits >> 16));
                let raw = format!("https://[{ip}]");
                let got = InstanceUrl::parse(&raw, &UrlPolicy::default());
                match address::classify(IpAddr::V6(ip)) {
                    Ok(()) => prop_assert_eq!(got.map(|u| u.host().clone()), Ok(InstanceHost::Ipv6(ip))),
                    Err(_) => prop_assert_eq!(got.err().map(|r| r.reason), Some(UrlReason::IpLiteralNotPublic)),
                }
            }
        }
    }
}

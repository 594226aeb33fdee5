//! GitLab webhook deliveries: authentication on the raw bytes (the Standard Webhooks signature
//! GitLab 19.0+ sends, or the plain secret token), the key that makes a delivery count once, and
//! the routing of each event kind to what the connector does about it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::error::Category;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::scan::{CommitSha, ScanTarget, ScanTrigger, valid_branch};

type HmacSha256 = hmac::Hmac<Sha256>;

/// How far `webhook-timestamp` may be from now, either way (Standard Webhooks; security policy 8.6).
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// Longest `X-Gitlab-Token` compared (GitLab keeps the token verbatim; ours are 64 characters).
const MAX_TOKEN_LEN: usize = 512;
/// Longest `webhook-signature` header parsed (a handful of `v1,<44 characters>` entries).
const MAX_SIGNATURE_HEADER_LEN: usize = 4096;
/// Longest delivery id taken as a deduplication key as it is.
const MAX_KEY_LEN: usize = 128;
/// Prefix of a Standard Webhooks signing secret.
const SIGNING_PREFIX: &str = "whsec_";

/// The delivery headers that matter, each present at most once (the caller refuses repeats).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryHeaders<'a> {
    /// `X-Gitlab-Event`, e.g. `Merge Request Hook`.
    pub event: Option<&'a str>,
    /// `X-Gitlab-Token`: the plain secret.
    pub token: Option<&'a str>,
    /// `Idempotency-Key` (GitLab 17.4+): the same across retries and manual resends.
    pub idempotency_key: Option<&'a str>,
    /// `X-Gitlab-Event-UUID` (14.8+): shared by every hook one request triggered.
    pub event_uuid: Option<&'a str>,
    /// `webhook-id` (19.0+, equal to the `Idempotency-Key`).
    pub webhook_id: Option<&'a str>,
    /// `webhook-timestamp`: Unix seconds.
    pub webhook_timestamp: Option<&'a str>,
    /// `webhook-signature`: space-separated `v1,<base64>` entries.
    pub webhook_signature: Option<&'a str>,
}

/// A Standard Webhooks signing key (`whsec_<base64 of the key bytes>`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// 32 random bytes from `rand`'s CSPRNG, the size GitLab generates.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    /// Parses `whsec_<base64>`; the key must decode to 24-64 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = BASE64.decode(text.strip_prefix(SIGNING_PREFIX)?).ok()?;
        (24..=64).contains(&bytes.len()).then_some(Self(bytes))
    }

    /// The `whsec_` form GitLab's `signing_token` attribute takes.
    pub fn to_whsec(&self) -> String {
        format!("{SIGNING_PREFIX}{}", BASE64.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64>` over `{id}.{timestamp}.{body}`, as GitLab sends it (for tests and the
    /// simulator).
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(self.mac(id, timestamp, body).finalize().into_bytes()))
    }
}

/// What an integration accepts: SHA-256 digests of its secret tokens and its signing keys
/// (current first; a previous one during a rotation's grace period).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// SHA-256 digests of accepted `X-Gitlab-Token` values.
    pub token_digests: Vec<[u8; 32]>,
    /// Signing keys; when there is one, only a valid signature authenticates.
    pub signing_keys: Vec<SigningKey>,
}

impl Credentials {
    /// Adds a token digest stored as hex; malformed digests are skipped (they match nothing).
    pub fn with_token_digest_hex(mut self, hex_digest: &str) -> Self {
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(hex_digest, &mut digest).is_ok() {
            self.token_digests.push(digest);
        }
        self
    }
}

/// Why a delivery was refused; logged, never told to the sender (every case answers the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No integration with that id.
    UnknownIntegration,
    /// The integration has no usable secret at all.
    NoCredentials,
    /// No `X-Gitlab-Token`, or an oversized one.
    MissingToken,
    /// The token matches no accepted secret.
    WrongToken,
    /// A signing integration without `webhook-id`, `webhook-timestamp` or `webhook-signature`.
    MissingSignature,
    /// `webhook-timestamp` is not a number or is more than five minutes away.
    StaleTimestamp,
    /// No signature entry matches.
    BadSignature,
}

impl AuthFailure {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::UnknownIntegration => "unknown_integration",
            AuthFailure::NoCredentials => "no_credentials",
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::WrongToken => "wrong_token",
            AuthFailure::MissingSignature => "missing_signature",
            AuthFailure::StaleTimestamp => "stale_timestamp",
            AuthFailure::BadSignature => "bad_signature",
        }
    }
}

/// A key that matches no signature, used so that every path does the same work.
fn dummy_key() -> SigningKey {
    SigningKey(vec![0x5a; 32])
}

fn token_matches(digests: &[[u8; 32]], token: Option<&str>) -> Result<(), AuthFailure> {
    let token = token.filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN);
    let digest: [u8; 32] = Sha256::digest(token.unwrap_or("").as_bytes()).into();
    // Compare against every digest without stopping early: the time does not say which matched.
    let matched = digests.iter().fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest));
    match (token, bool::from(matched)) {
        (None, _) => Err(AuthFailure::MissingToken),
        (Some(_), true) => Ok(()),
        (Some(_), false) => Err(AuthFailure::WrongToken),
    }
}

fn signature_matches(keys: &[SigningKey], h: &DeliveryHeaders<'_>, body: &[u8], now: i64) -> Result<(), AuthFailure> {
    let (Some(id), Some(ts), Some(header)) = (h.webhook_id, h.webhook_timestamp, h.webhook_signature) else {
        // Same work as a real check, then the refusal.
        let _ = dummy_key().mac("", "", body).finalize();
        return Err(AuthFailure::MissingSignature);
    };
    let fresh = ts
        .parse::<i64>()
        .ok()
        .is_some_and(|t| now.checked_sub(t).is_some_and(|d| d.abs() <= SIGNATURE_TOLERANCE_SECONDS));
    let candidates: Vec<Vec<u8>> = if header.len() <= MAX_SIGNATURE_HEADER_LEN {
        header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|b64| BASE64.decode(b64).ok())
            .filter(|sig| sig.len() == 32)
            .take(8)
            .collect()
    } else {
        Vec::new()
    };
    let mut matched = false;
    for key in keys {
        let expected = key.mac(id, ts, body).finalize().into_bytes();
        for sig in &candidates {
            matched |= bool::from(expected.as_slice().ct_eq(sig.as_slice()));
        }
    }
    match (fresh, matched) {
        (false, _) => Err(AuthFailure::StaleTimestamp),
        (true, true) => Ok(()),
        (true, false) => Err(AuthFailure::BadSignature),
    }
}

/// Authenticates a delivery on its raw body before anything parses it. With signing keys, a
/// valid, fresh signature is the only way in (no fallback to the token); without, the token
/// must match a stored digest. `None` (no such integration) does the same work and fails.
pub fn authenticate(
    credentials: Option<&Credentials>,
    headers: &DeliveryHeaders<'_>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), AuthFailure> {
    let Some(creds) = credentials else {
        let _ = signature_matches(&[dummy_key()], headers, body, now_unix);
        let _ = token_matches(&[[0u8; 32]], headers.token);
        return Err(AuthFailure::UnknownIntegration);
    };
    if !creds.signing_keys.is_empty() {
        let result = signature_matches(&creds.signing_keys, headers, body, now_unix);
        let _ = token_matches(&[[0u8; 32]], headers.token);
        return result;
    }
    let _ = signature_matches(&[dummy_key()], headers, body, now_unix);
    if creds.token_digests.is_empty() {
        // An integration without a secret refuses everything (security policy 8.6.3).
        let _ = token_matches(&[[0u8; 32]], headers.token);
        return Err(AuthFailure::NoCredentials);
    }
    token_matches(&creds.token_digests, headers.token)
}

fn usable_key(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|k| {
        !k.is_empty()
            && k.len() <= MAX_KEY_LEN
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    })
}

/// The key a delivery is recorded under, so that a retry or a manual resend counts once:
/// `Idempotency-Key` (or `webhook-id`, its equal); else `X-Gitlab-Event-UUID` together with the
/// body's digest (one request can trigger several hooks that share that UUID: a push updating
/// two merge requests sends two deliveries with it); else the body's digest alone.
pub fn dedup_key(headers: &DeliveryHeaders<'_>, body: &[u8]) -> String {
    if let Some(key) = usable_key(headers.idempotency_key).or_else(|| usable_key(headers.webhook_id)) {
        return format!("idem:{key}");
    }
    let digest = hex::encode(Sha256::digest(body));
    match usable_key(headers.event_uuid) {
        Some(uuid) => format!("uuid:{uuid}:{digest}"),
        None => format!("body:{digest}"),
    }
}

/// The event kinds the connector knows, from `X-Gitlab-Event` (gitlab-api.md 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `Push Hook`.
    Push,
    /// `Tag Push Hook`.
    TagPush,
    /// `Merge Request Hook`.
    MergeRequest,
    /// `Note Hook` or `Confidential Note Hook`.
    Note,
    /// `Vulnerability Hook`.
    Vulnerability,
    /// `Resource Access Token Hook`.
    ResourceAccessToken,
    /// Anything else (pipelines, issues, system hooks, ...).
    Other,
}

impl EventKind {
    /// From the header, or from the body's `object_kind` when the header is missing.
    pub fn from_header(header: &str) -> Self {
        match header.trim() {
            "Push Hook" => EventKind::Push,
            "Tag Push Hook" => EventKind::TagPush,
            "Merge Request Hook" => EventKind::MergeRequest,
            "Note Hook" | "Confidential Note Hook" => EventKind::Note,
            "Vulnerability Hook" => EventKind::Vulnerability,
            "Resource Access Token Hook" => EventKind::ResourceAccessToken,
            _ => EventKind::Other,
        }
    }

    fn object_kind(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::TagPush => "tag_push",
            EventKind::MergeRequest => "merge_request",
            EventKind::Note => "note",
            EventKind::Vulnerability => "vulnerability",
            EventKind::ResourceAccessToken => "access_token",
            EventKind::Other => "",
        }
    }

    /// Stable snake_case name for logs and records.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Other => "other",
            known => known.object_kind(),
        }
    }
}

/// Why an authenticated delivery leads to nothing (answered 200 `ignored` with this reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// An event kind the connector does not act on.
    UnknownEvent,
    /// Tags are not scanned.
    TagPush,
    /// A branch was deleted (`after` is all zeros).
    BranchDeleted,
    /// A push to a branch other than the default branch (merge requests cover those).
    NotDefaultBranch,
    /// A merge request update without new commits (title, labels, assignees, reviewers, ...).
    NoNewCommits,
    /// A merge request action that changes no code (approvals and the like).
    NotACodeChange,
    /// A comment the integration's own GitLab user wrote.
    OwnNote,
    /// A comment by someone else: the connector takes no commands from comments.
    Note,
    /// An access-token event about a token other than the integration's.
    OtherToken,
    /// The project is not tracked by this integration.
    UntrackedProject,
    /// JSON, but not the shape GitLab documents for this event.
    UnexpectedPayload,
}

impl IgnoreReason {
    /// Stable snake_case name for responses and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::UnknownEvent => "unknown_event",
            IgnoreReason::TagPush => "tag_push",
            IgnoreReason::BranchDeleted => "branch_deleted",
            IgnoreReason::NotDefaultBranch => "not_default_branch",
            IgnoreReason::NoNewCommits => "no_new_commits",
            IgnoreReason::NotACodeChange => "not_a_code_change",
            IgnoreReason::OwnNote => "own_note",
            IgnoreReason::Note => "note",
            IgnoreReason::OtherToken => "other_token",
            IgnoreReason::UntrackedProject => "untracked_project",
            IgnoreReason::UnexpectedPayload => "unexpected_payload",
        }
    }
}

/// Why pending work on a merge request is no longer wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The merge request was merged.
    Merged,
    /// The merge request was closed.
    Closed,
}

/// GitLab's view of one of its vulnerabilities, kept for the scan results to match against.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VulnerabilityChange {
    /// The project.
    pub project_id: u64,
    /// GitLab's vulnerability id (from its URL), when the payload carries one.
    pub vulnerability_id: Option<u64>,
    /// `detected`, `confirmed`, `dismissed` or `resolved`.
    pub state: String,
    /// GitLab's severity.
    pub severity: Option<String>,
    /// The scanner type GitLab names (`sast`, `secret_detection`, ...).
    pub report_type: Option<String>,
    /// Identifiers as `type:value` (at most ten), the link to the connector's findings.
    pub identifiers: Vec<String>,
    /// The file, when located in one.
    pub file: Option<String>,
}

/// What an authenticated delivery asks of the connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Scan one commit.
    Scan {
        /// The project.
        project_id: u64,
        /// Merge request or branch.
        target: ScanTarget,
        /// The commit.
        sha: CommitSha,
        /// Why.
        trigger: ScanTrigger,
    },
    /// Drop pending work on a merge request.
    Cancel {
        /// The project.
        project_id: u64,
        /// The merge request.
        iid: u64,
        /// Merged or closed.
        reason: CancelReason,
    },
    /// Record GitLab's state of a vulnerability.
    Vulnerability(VulnerabilityChange),
    /// The integration's own token expires soon.
    TokenExpiring {
        /// GitLab's date (`YYYY-MM-DD`), when given.
        expires_at: Option<String>,
    },
}

impl Action {
    /// The project the action concerns (the tracking check), if any.
    pub fn project_id(&self) -> Option<u64> {
        match self {
            Action::Scan { project_id, .. } | Action::Cancel { project_id, .. } => Some(*project_id),
            Action::Vulnerability(v) => Some(v.project_id),
            Action::TokenExpiring { .. } => None,
        }
    }
}

/// The routing decision for a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Do this.
    Act(Action),
    /// Answer 200 `ignored`.
    Ignore(IgnoreReason),
}

/// The body is not JSON at all (answered 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the body is not JSON")]
pub struct NotJson;

#[derive(Deserialize)]
struct ProjectRef {
    id: u64,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct CommitRef {
    id: String,
}

#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: u64,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    oldrev: Option<String>,
    #[serde(default)]
    target_branch: Option<String>,
    #[serde(default)]
    last_commit: Option<CommitRef>,
}

#[derive(Deserialize)]
struct MergeRequestEvent {
    #[serde(default)]
    object_kind: Option<String>,
    project: ProjectRef,
    object_attributes: MergeRequestAttributes,
}

#[derive(Deserialize)]
struct PushEvent {
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    checkout_sha: Option<String>,
    project: ProjectRef,
}

#[derive(Deserialize)]
struct UserRef {
    id: u64,
}

#[derive(Deserialize)]
struct NoteAttributes {
    #[serde(default)]
    author_id: Option<u64>,
}

#[derive(Deserialize)]
struct NoteEvent {
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(default)]
    user: Option<UserRef>,
    object_attributes: NoteAttributes,
}

#[derive(Deserialize)]
struct Identifier {
    #[serde(default)]
    external_type: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    file: Option<String>,
}

#[derive(Deserialize)]
struct VulnerabilityAttributes {
    project_id: u64,
    state: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    report_type: Option<String>,
    #[serde(default)]
    identifiers: Vec<Identifier>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize)]
struct VulnerabilityEvent {
    #[serde(default)]
    object_kind: Option<String>,
    object_attributes: VulnerabilityAttributes,
}

#[derive(Deserialize)]
struct AccessTokenAttributes {
    user_id: u64,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct AccessTokenEvent {
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(default)]
    event_name: Option<String>,
    object_attributes: AccessTokenAttributes,
}

#[derive(Deserialize)]
struct KindOnly {
    #[serde(default)]
    object_kind: Option<String>,
}

/// GitLab ids are positive and fit in a signed 64-bit integer.
fn gitlab_id(id: u64) -> Option<u64> {
    (1..=i64::MAX as u64).contains(&id).then_some(id)
}

/// Short, printable text from a payload, or nothing.
fn label(raw: Option<&str>, max: usize) -> Option<String> {
    let text: String = raw?.chars().filter(|c| !c.is_control()).take(max).collect();
    (!text.is_empty()).then_some(text)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, NotJson> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(Some(v)),
        // Valid JSON of another shape is GitLab's business, not an error worth a 4xx.
        Err(e) if e.classify() == Category::Data => {
            serde_json::from_slice::<IgnoredAny>(body).map(|_| None).map_err(|_| NotJson)
        }
        Err(_) => Err(NotJson),
    }
}

fn kind_agrees(kind: EventKind, object_kind: Option<&str>) -> bool {
    object_kind.is_none_or(|k| k == kind.object_kind())
}

/// Decides what a delivery asks for. `own_user_id` is the integration token's GitLab user.
/// Pure: whether the project is tracked is the caller's check.
pub fn route(event_header: Option<&str>, body: &[u8], own_user_id: u64) -> Result<Routed, NotJson> {
    let kind = match event_header {
        Some(h) => EventKind::from_header(h),
        None => match parse::<KindOnly>(body)?.and_then(|k| k.object_kind) {
            Some(k) => [
                EventKind::Push,
                EventKind::TagPush,
                EventKind::MergeRequest,
                EventKind::Note,
                EventKind::Vulnerability,
                EventKind::ResourceAccessToken,
            ]
            .into_iter()
            .find(|e| e.object_kind() == k)
            .unwrap_or(EventKind::Other),
            None => EventKind::Other,
        },
    };
    let unexpected = Routed::Ignore(IgnoreReason::UnexpectedPayload);
    Ok(match kind {
        EventKind::Other => {
            serde_json::from_slice::<IgnoredAny>(body).map_err(|_| NotJson)?;
            Routed::Ignore(IgnoreReason::UnknownEvent)
        }
        EventKind::TagPush => {
            serde_json::from_slice::<IgnoredAny>(body).map_err(|_| NotJson)?;
            Routed::Ignore(IgnoreReason::TagPush)
        }
        EventKind::MergeRequest => match parse::<MergeRequestEvent>(body)? {
            Some(e) if kind_agrees(kind, e.object_kind.as_deref()) => route_merge_request(e).unwrap_or(unexpected),
            _ => unexpected,
        },
        EventKind::Push => match parse::<PushEvent>(body)? {
            Some(e) if kind_agrees(kind, e.object_kind.as_deref()) => route_push(&e).unwrap_or(unexpected),
            _ => unexpected,
        },
        EventKind::Note => match parse::<NoteEvent>(body)? {
            Some(e) if kind_agrees(kind, e.object_kind.as_deref()) => {
                let author = e.object_attributes.author_id.or(e.user.map(|u| u.id));
                Routed::Ignore(if author == Some(own_user_id) { IgnoreReason::OwnNote } else { IgnoreReason::Note })
            }
            _ => unexpected,
        },
        EventKind::Vulnerability => match parse::<VulnerabilityEvent>(body)? {
            Some(e) if kind_agrees(kind, e.object_kind.as_deref()) => route_vulnerability(e).unwrap_or(unexpected),
            _ => unexpected,
        },
        EventKind::ResourceAccessToken => match parse::<AccessTokenEvent>(body)? {
            Some(e)
                if kind_agrees(kind, e.object_kind.as_deref())
                    && e.event_name.as_deref().is_none_or(|n| n == "expiring_access_token") =>
            {
                if e.object_attributes.user_id == own_user_id {
                    Routed::Act(Action::TokenExpiring {
                        expires_at: label(e.object_attributes.expires_at.as_deref(), 32),
                    })
                } else {
                    Routed::Ignore(IgnoreReason::OtherToken)
                }
            }
            _ => unexpected,
        },
    })
}

fn route_merge_request(e: MergeRequestEvent) -> Option<Routed> {
    let project_id = gitlab_id(e.project.id)?;
    let attrs = e.object_attributes;
    let iid = gitlab_id(attrs.iid)?;
    let scan = |attrs: MergeRequestAttributes| -> Option<Routed> {
        let sha = CommitSha::parse(&attrs.last_commit?.id)?;
        let target_branch = attrs.target_branch.filter(|b| valid_branch(b))?;
        Some(Routed::Act(Action::Scan {
            project_id,
            target: ScanTarget::MergeRequest { iid, target_branch },
            sha,
            trigger: ScanTrigger::MergeRequest,
        }))
    };
    match attrs.action.as_deref() {
        Some("open" | "reopen") => scan(attrs),
        // GitLab sets `oldrev` only when the update pushed code.
        Some("update") if attrs.oldrev.as_deref().is_some_and(|r| !r.is_empty()) => scan(attrs),
        Some("update") => Some(Routed::Ignore(IgnoreReason::NoNewCommits)),
        Some("merge") => Some(Routed::Act(Action::Cancel { project_id, iid, reason: CancelReason::Merged })),
        Some("close") => Some(Routed::Act(Action::Cancel { project_id, iid, reason: CancelReason::Closed })),
        _ => Some(Routed::Ignore(IgnoreReason::NotACodeChange)),
    }
}

fn route_push(e: &PushEvent) -> Option<Routed> {
    let project_id = gitlab_id(e.project.id)?;
    let branch = e.git_ref.strip_prefix("refs/heads/")?;
    if !valid_branch(branch) {
        return None;
    }
    if e.after.bytes().all(|b| b == b'0') {
        return Some(Routed::Ignore(IgnoreReason::BranchDeleted));
    }
    if e.project.default_branch.as_deref() != Some(branch) {
        return Some(Routed::Ignore(IgnoreReason::NotDefaultBranch));
    }
    let sha = CommitSha::parse(e.checkout_sha.as_deref().filter(|s| !s.is_empty()).unwrap_or(&e.after))?;
    Some(Routed::Act(Action::Scan {
        project_id,
        target: ScanTarget::Branch { branch: branch.to_owned() },
        sha,
        trigger: ScanTrigger::Push,
    }))
}

fn route_vulnerability(e: VulnerabilityEvent) -> Option<Routed> {
    let a = e.object_attributes;
    let project_id = gitlab_id(a.project_id)?;
    let state = label(Some(&a.state), 32)?;
    let vulnerability_id =
        a.url.as_deref().and_then(|u| u.rsplit('/').next()).and_then(|id| id.parse().ok()).and_then(gitlab_id);
    let identifiers = a
        .identifiers
        .iter()
        .filter_map(|i| {
            let t = label(i.external_type.as_deref(), 64)?;
            let v = label(i.external_id.as_deref(), 256)?;
            Some(format!("{t}:{v}"))
        })
        .take(10)
        .collect();
    Some(Routed::Act(Action::Vulnerability(VulnerabilityChange {
        project_id,
        vulnerability_id,
        state,
        severity: label(a.severity.as_deref(), 32),
        report_type: label(a.report_type.as_deref(), 64),
        identifiers,
        file: label(a.location.and_then(|l| l.file).as_deref(), 1024),
    })))
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;

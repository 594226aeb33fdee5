//! GitLab's answers classified into the conditions the connector acts on (gitlab-api.md 1.5).

use std::time::Duration;

/// What went wrong talking to a GitLab instance. Messages never contain tokens, addresses or
/// upstream bodies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GitlabError {
    /// 401 `401 Unauthorized`: unknown, malformed or missing token.
    #[error("gitlab rejected the token")]
    Unauthorized,
    /// 401 `invalid_token` "Token is expired".
    #[error("the token has expired")]
    TokenExpired,
    /// 401 `invalid_token` "Token was revoked".
    #[error("the token was revoked")]
    TokenRevoked,
    /// 403 `insufficient_scope`; `scope` is what GitLab says it would accept.
    #[error("the token lacks a required scope")]
    InsufficientScope {
        /// Scopes GitLab names in the answer.
        scope: Option<String>,
    },
    /// 403 without `insufficient_scope`: role or visibility.
    #[error("gitlab refused the request")]
    Forbidden,
    /// 404 with a JSON body.
    #[error("not found on gitlab")]
    NotFound,
    /// 400 with a JSON body.
    #[error("gitlab answered bad request")]
    BadRequest,
    /// 409 with a JSON body.
    #[error("gitlab reported a conflict")]
    Conflict,
    /// 422 with a JSON body (for example a hook test whose delivery failed).
    #[error("gitlab could not process the request")]
    Unprocessable,
    /// 429, with the wait GitLab asked for when it said so.
    #[error("gitlab rate limit reached")]
    RateLimited {
        /// From `Retry-After`, else `RateLimit-Reset`.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("gitlab server error {status}")]
    Server {
        /// The status code.
        status: u16,
    },
    /// The TLS handshake failed (unknown CA, wrong name, expired certificate, old protocol).
    #[error("tls handshake with the instance failed")]
    Tls,
    /// No connection could be made.
    #[error("the instance could not be reached")]
    Unreachable,
    /// Connect or total timeout.
    #[error("the instance did not answer in time")]
    Timeout,
    /// The answer does not look like GitLab's API (HTML, redirect, oversized body, wrong JSON).
    #[error("the instance does not answer like gitlab: {why}")]
    NotGitlab {
        /// Short reason for logs.
        why: &'static str,
    },
    /// The supplied CA bundle is not usable PEM.
    #[error("the CA certificate is not a valid PEM bundle")]
    InvalidCaCertificate,
    /// A URL to be requested fell outside the instance (pagination links and the like).
    #[error("refused a request outside the instance")]
    OffOrigin,
}

impl GitlabError {
    /// Whether retrying later may succeed (token problems never do).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Server { .. } | Self::Unreachable | Self::Timeout)
    }
}

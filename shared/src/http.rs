//! The HTTP edge shared by the API functions: the team from the authorizer claims, bounded and
//! strict JSON bodies, and the one mapping from errors to `{"error": {...}}` responses.

use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_json::{Value, json};

use crate::domain::gitlab::GitlabError;
use crate::domain::ids::TeamId;
use crate::domain::url_policy::UrlRejection;
use crate::ports::PortError;

/// Largest accepted request body (api.md conventions).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error on its way to becoming an HTTP response (boxed: it travels in every `Result`).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    message: String,
    hint: Option<String>,
    details: Option<Value>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0.code, self.0.status.as_u16())
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ApiError {
    /// An error with a status, a stable code and a sentence for a person.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            message: message.into(),
            hint: None,
            details: None,
            retry_after: None,
            source: None,
        }))
    }

    /// Replaces the sentence for a person.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }

    /// Adds what the person can do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }

    /// Keeps the cause for the log line (never for the response).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// 400 `invalid_request` naming the field.
    pub fn invalid_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with_details(json!({ "field": field }))
    }

    /// 401: no team in the authorizer claims.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "The request carries no team.")
            .with_hint("Sign in again; the access token must carry the team claim.")
    }

    /// 404, identical for missing and foreign objects.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found.")
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "This method is not allowed on this route.")
    }

    /// 413.
    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is larger than 64 KiB.")
    }

    /// 415.
    pub fn unsupported_media_type() -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send the body as application/json.")
    }

    /// 429: too many connection tests for one team.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut e =
            Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many connection tests in a short time.")
                .with_hint("Wait a minute and try again.")
                .with_details(json!({ "retry_after_seconds": retry_after.as_secs() }));
        e.0.retry_after = Some(retry_after);
        e
    }

    /// 500 with the cause kept for the log only.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.")
            .with_source(source)
    }

    /// Converts once into the response and logs the error once.
    pub fn into_response(self) -> Response<Body> {
        let chain = error_chain(self.0.source.as_deref());
        if self.0.status.is_server_error() {
            tracing::error!(error.code = self.0.code, status = self.0.status.as_u16(), error.cause_chain = %chain, "request failed");
        } else {
            tracing::info!(error.code = self.0.code, status = self.0.status.as_u16(), error.cause_chain = %chain, "request refused");
        }
        let mut error = json!({ "code": self.0.code, "message": self.0.message });
        if let Some(hint) = self.0.hint {
            error["hint"] = Value::String(hint);
        }
        if let Some(details) = self.0.details {
            error["details"] = details;
        }
        let mut response = json_response(self.0.status, &json!({ "error": error }));
        if let Some(wait) = self.0.retry_after
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

fn error_chain(err: Option<&(dyn std::error::Error + Send + Sync + 'static)>) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = err.map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

impl From<UrlRejection> for ApiError {
    fn from(r: UrlRejection) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_instance_url", r.message.clone())
            .with_details(json!({ "reason": r.reason.as_str() }));
        if let Some(hint) = r.hint {
            e = e.with_hint(hint);
        }
        e
    }
}

const UNREACHABLE_HINT: &str = "Check the URL, and if the instance sits behind a firewall, allowlist the connector's egress IP addresses for HTTPS.";

impl From<GitlabError> for ApiError {
    fn from(err: GitlabError) -> Self {
        use StatusCode as S;
        let unprocessable = S::UNPROCESSABLE_ENTITY;
        match &err {
            GitlabError::Unauthorized => ApiError::new(unprocessable, "token_invalid", "GitLab did not accept this token.")
                .with_hint("Check that the whole token was copied and that it belongs to this GitLab instance."),
            GitlabError::Forbidden => ApiError::new(unprocessable, "token_invalid", "GitLab refused requests made with this token.")
                .with_hint("The token's user may be blocked or lack access; use a token of an active user."),
            GitlabError::TokenExpired => ApiError::new(unprocessable, "token_expired", "The token has expired.")
                .with_hint("Create a new token in GitLab (or rotate this one) and enter it again."),
            GitlabError::TokenRevoked => ApiError::new(unprocessable, "token_revoked", "The token was revoked in GitLab.")
                .with_hint("Create a new token in GitLab and enter it again."),
            GitlabError::InsufficientScope { scope } => {
                // GitLab lists the scopes it would accept; pass on only well-formed scope names.
                let missing: Vec<&str> = scope
                    .as_deref()
                    .map(|s| {
                        s.split_whitespace()
                            .filter(|w| w.len() <= 64 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                            .take(16)
                            .collect()
                    })
                    .unwrap_or_default();
                ApiError::new(unprocessable, "insufficient_scope", "The token lacks a scope the connector needs.")
                    .with_hint("Recreate the token with the api scope (or read_api and read_repository for read-only use).")
                    .with_details(json!({ "missing_scopes": missing }))
            }
            GitlabError::RateLimited { retry_after } => {
                let mut e = ApiError::new(S::TOO_MANY_REQUESTS, "instance_rate_limited", "The GitLab instance is rate limiting requests.")
                    .with_hint("Wait and try again.");
                if let Some(wait) = retry_after {
                    e = e.with_details(json!({ "retry_after_seconds": wait.as_secs() }));
                    e.0.retry_after = Some(*wait);
                }
                e
            }
            GitlabError::Tls => ApiError::new(S::BAD_GATEWAY, "tls_error", "The instance's TLS certificate could not be verified.")
                .with_hint("Serve the full certificate chain from a trusted CA, or supply your private CA as ca_certificate (PEM)."),
            GitlabError::Unreachable | GitlabError::Server { .. } => {
                ApiError::new(S::BAD_GATEWAY, "instance_unreachable", "Could not reach a GitLab instance at this URL.")
                    .with_hint(UNREACHABLE_HINT)
            }
            GitlabError::Timeout => ApiError::new(S::GATEWAY_TIMEOUT, "instance_timeout", "The GitLab instance did not answer in time.")
                .with_hint(UNREACHABLE_HINT),
            GitlabError::NotFound
            | GitlabError::BadRequest
            | GitlabError::Conflict
            | GitlabError::Unprocessable
            | GitlabError::NotGitlab { .. }
            | GitlabError::OffOrigin => ApiError::new(S::BAD_GATEWAY, "not_gitlab", "The URL does not answer like a GitLab instance.")
                .with_hint("Enter the address you open GitLab at in a browser (for example https://gitlab.example.com or https://example.com/gitlab); it must not redirect."),
            GitlabError::InvalidCaCertificate => ApiError::invalid_request("ca_certificate", "The CA certificate is not a valid PEM bundle.")
                .with_hint("Paste one or more PEM certificates (-----BEGIN CERTIFICATE----- ...)."),
        }
        .with_source(err)
    }
}

impl From<PortError> for ApiError {
    fn from(err: PortError) -> Self {
        match err {
            PortError::NotFound => ApiError::not_found(),
            PortError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "The integration changed while this request ran.")
                    .with_hint("Reload the integration and try again.")
            }
            PortError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "A back-end service is unavailable; try again.",
            )
            .with_source(err),
            PortError::Corrupt(_) => ApiError::internal(err),
        }
    }
}

/// A JSON response.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::Text(String::from_utf8_lossy(&bytes).into_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A response without a body.
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

/// The team from the JWT authorizer claims (API Gateway HTTP API, payload 2.0). Nothing else
/// may select the tenant: not the body, the path, nor any header.
pub fn team_id(req: &Request, claim: &str) -> Result<TeamId, ApiError> {
    let raw = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).and_then(|jwt| jwt.claims.get(claim)).cloned()
        }
        _ => None,
    };
    raw.as_deref().and_then(TeamId::parse).ok_or_else(ApiError::unauthorized)
}

/// The raw body bytes, refused above [`MAX_BODY_BYTES`].
pub fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large());
    }
    Ok(bytes)
}

/// Parses a JSON body strictly: size cap, `application/json`, and serde errors that name the
/// field (unknown fields and duplicate keys are refused by the request types themselves).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::unsupported_media_type());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // The path can hold a key the client sent; only echo it when it looks like a field name.
        let plausible = path.len() <= 64
            && path
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'[' | b']'));
        let inner = e.into_inner();
        // A syntax error has no meaningful field: the document itself is broken.
        let syntax = matches!(inner.classify(), Category::Syntax | Category::Eof);
        let field = if path == "." || !plausible || syntax { "body".to_owned() } else { path };
        let reason = describe_json_error(&inner);
        ApiError::invalid_request(&field, format!("The request body is invalid at {field}: {reason}."))
    })?;
    de.end().map_err(|_| {
        ApiError::invalid_request("body", "The request body has trailing characters after the JSON value.")
    })?;
    Ok(value)
}

/// serde_json's messages can quote input (for example an unknown field's name, or a string of
/// the wrong type); keep the category and drop anything that could echo a token.
fn describe_json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        Category::Syntax | Category::Eof => "the body is not valid JSON".to_owned(),
        Category::Io => "the body could not be read".to_owned(),
        Category::Data => {
            let text = e.to_string();
            if text.starts_with("unknown field") {
                "unknown field".to_owned()
            } else if text.starts_with("duplicate field") {
                "duplicate field".to_owned()
            } else if text.starts_with("missing field") {
                text.split(" at line").next().unwrap_or("missing field").to_owned()
            } else if text.starts_with("invalid type") {
                let expected =
                    text.split("expected ").nth(1).and_then(|s| s.split(" at line").next()).unwrap_or("another type");
                format!("wrong type, expected {expected}")
            } else {
                "invalid value".to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        instance_url: String,
        token: String,
    }

    fn request(body: &str, content_type: Option<&str>) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/x");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::Text(body.to_owned())).expect("request")
    }

    fn field_of(e: &ApiError) -> String {
        e.0.details.as_ref().and_then(|d| d["field"].as_str()).unwrap_or_default().to_owned()
    }

    #[test]
    fn json_errors_name_the_field_without_echoing_values() {
        let secret = "glpat-supersecretvalue123";
        let e = json_body::<Body1>(&request(
            &format!(r#"{{"instance_url": 5, "token": "{secret}"}}"#),
            Some("application/json"),
        ))
        .unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert_eq!(field_of(&e), "instance_url");
        let e = json_body::<Body1>(&request(
            &format!(r#"{{"instance_url": "x", "token": 7, "{secret}": 1}}"#),
            Some("application/json"),
        ))
        .unwrap_err();
        assert_eq!(field_of(&e), "token");
        let e = json_body::<Body1>(&request(
            &format!(r#"{{"instance_url": "x", "token": "y", "{secret}": 1}}"#),
            Some("application/json"),
        ))
        .unwrap_err();
        assert!(!e.0.message.contains(secret) && !field_of(&e).contains(secret), "{e:?}");
        assert!(e.0.message.contains("unknown field"), "{}", e.0.message);
        let e = json_body::<Body1>(&request(
            r#"{"instance_url": "x", "instance_url": "y", "token": "z"}"#,
            Some("application/json"),
        ))
        .unwrap_err();
        assert!(e.0.message.contains("duplicate field"), "{}", e.0.message);
        let e = json_body::<Body1>(&request("{not json", Some("application/json"))).unwrap_err();
        assert!(e.0.message.contains("not valid JSON"));
        let e = json_body::<Body1>(&request(r#"{"instance_url": "x"}"#, Some("application/json"))).unwrap_err();
        assert!(e.0.message.contains("missing field `token`"), "{}", e.0.message);
    }

    #[test]
    fn content_type_and_size_are_enforced() {
        let ok = r#"{"instance_url": "x", "token": "y"}"#;
        assert!(json_body::<Body1>(&request(ok, Some("application/json; charset=utf-8"))).is_ok());
        assert_eq!(json_body::<Body1>(&request(ok, Some("text/plain"))).unwrap_err().status(), 415);
        assert_eq!(json_body::<Body1>(&request(ok, None)).unwrap_err().status(), 415);
        let big = format!(r#"{{"instance_url": "{}", "token": "y"}}"#, "a".repeat(MAX_BODY_BYTES));
        assert_eq!(json_body::<Body1>(&request(&big, Some("application/json"))).unwrap_err().status(), 413);
    }

    #[test]
    fn missing_team_claim_is_unauthorized() {
        let req = request("", None);
        assert_eq!(team_id(&req, "team_id").unwrap_err().status(), 401);
    }
}

//! The local HTTP host: turns each HTTP request into the API Gateway HTTP API (payload 2.0)
//! event the deployed function receives, with `X-Team-Id` mapped into the JWT claims, runs the
//! same handler, and turns its response back into HTTP.

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{HeaderMap, Request as HttpRequest, Response as HttpResponse, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use lambda_http::Body;
use serde_json::{Map, Value, json};

/// API Gateway's own payload limit; the functions apply their own, smaller ones.
const MAX_GATEWAY_BODY: usize = 10 * 1024 * 1024;
/// A function URL's request payload limit (6 MB), answered by the URL itself.
const MAX_FUNCTION_URL_BODY: usize = 6 * 1024 * 1024;

/// The functions reachable over HTTP.
pub struct Functions {
    /// connect function dependencies.
    pub connect: connect::Deps,
    /// api function dependencies.
    pub api: api::Deps,
    /// webhook function dependencies (its function URL's paths).
    pub webhook: webhook::Deps,
    /// Claim that carries the team.
    pub team_claim: String,
}

/// The router serving every path through [`dispatch`].
pub fn router(functions: Arc<Functions>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(functions)
}

fn gateway_error(status: StatusCode, message: &str) -> HttpResponse<AxumBody> {
    let mut r = HttpResponse::new(AxumBody::from(json!({ "message": message }).to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().expect("static header"));
    r
}

/// Builds the payload 2.0 event. Header names are lower-cased and repeated headers joined with
/// commas, as API Gateway does.
pub fn gateway_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    team_claim: &str,
) -> Value {
    let mut hmap: Map<String, Value> = Map::new();
    let mut team = None;
    for (name, value) in headers {
        let Ok(v) = value.to_str() else { continue };
        if name.as_str().eq_ignore_ascii_case("x-team-id") {
            team = Some(v.to_owned());
            continue;
        }
        let entry = hmap.entry(name.as_str().to_ascii_lowercase()).or_insert(Value::String(String::new()));
        if let Value::String(s) = entry {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(v);
        }
    }
    let mut qmap: Map<String, Value> = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        qmap.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let (body_text, b64) = match std::str::from_utf8(body) {
        Ok(t) => (t.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = time::OffsetDateTime::now_utc();
    let mut context = json!({
        "accountId": crate::provision::LOCAL_ACCOUNT,
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": hmap.get("user-agent").cloned().unwrap_or(Value::String(String::new())) },
        "requestId": format!("local-{}", now.unix_timestamp_nanos()),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.unix_timestamp().to_string(),
        "timeEpoch": now.unix_timestamp() * 1000,
    });
    if let Some(team) = team.filter(|_| !team_claim.is_empty()) {
        context["authorizer"] = json!({ "jwt": { "claims": { team_claim: team }, "scopes": null } });
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hmap,
        "requestContext": context,
        "isBase64Encoded": b64,
    });
    if !qmap.is_empty() {
        event["queryStringParameters"] = Value::Object(qmap);
    }
    if !body.is_empty() {
        event["body"] = Value::String(body_text);
    }
    event
}

async fn dispatch(State(functions): State<Arc<Functions>>, req: HttpRequest<AxumBody>) -> HttpResponse<AxumBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let bytes = match http_body_util::Limited::new(body, MAX_GATEWAY_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    // A function URL has no authorizer: the team header means nothing there.
    let claim = if webhook::serves(&path) { "" } else { functions.team_claim.as_str() };
    let event = gateway_event(parts.method.as_str(), &path, &query, &parts.headers, &bytes, claim);
    let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
        return gateway_error(StatusCode::BAD_REQUEST, "Bad Request");
    };
    // The same split as the template: the webhook function URL, then the HTTP API's routes
    // (repositories and sync go to the api function).
    let response = if webhook::serves(&path) {
        if bytes.len() > MAX_FUNCTION_URL_BODY {
            return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
        webhook::handle(&functions.webhook, request).await
    } else if api::serves(&path) {
        api::handle(&functions.api, request).await
    } else if path == "/integrations/gitlab" || path.starts_with("/integrations/gitlab/") {
        connect::handle(&functions.connect, request).await
    } else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    };
    match response {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let bytes = match body {
                Body::Empty => Vec::new(),
                Body::Text(t) => t.into_bytes(),
                Body::Binary(b) => b,
                _ => Vec::new(),
            };
            HttpResponse::from_parts(parts, AxumBody::from(bytes))
        }
        // What API Gateway answers when the integration fails.
        Err(_) => gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

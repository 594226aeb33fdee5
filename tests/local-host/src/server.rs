//! The local HTTP host: routes each HTTP request as the deployed stack does (the template's HTTP
//! API routes, else API Gateway's own 404; the webhook paths to the function behind the function
//! URL), turns it into the API Gateway HTTP API (payload 2.0) event the deployed function
//! receives, with `X-Team-Id` mapped into the JWT claims, runs the same handler, and turns its
//! response back into HTTP.

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request as HttpRequest, Response as HttpResponse, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use lambda_http::Body;
use serde_json::{Map, Value, json};

use crate::routes::{self, ApiRoute};

/// API Gateway's own payload limit; the functions apply their own, smaller ones.
const MAX_GATEWAY_BODY: usize = 10 * 1024 * 1024;
/// A function URL's request payload limit (6 MB), answered by the URL itself.
const MAX_FUNCTION_URL_BODY: usize = 6 * 1024 * 1024;

/// Logical id of the function behind the webhook function URL.
pub const WEBHOOK_FUNCTION: &str = "WebhookFunction";

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

/// One HTTP request for a function.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The route that matched (`GET /integrations/gitlab/{id}`), `$default` for a function URL.
    pub route_key: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Query string without `?`.
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a [u8],
}

/// A function's answer as the gateway passes it on.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

impl Functions {
    /// Template logical ids of the functions this host runs for HTTP requests.
    pub const SERVED: &'static [&'static str] = &["ConnectFunction", "ApiFunction", WEBHOOK_FUNCTION];

    /// Runs one function, named by its template logical id, on a request as its trigger would
    /// deliver it (the team header becomes claims, except behind the function URL, which has no
    /// authorizer). `None` for a function this host does not run over HTTP.
    pub async fn invoke(&self, function: &str, call: &Call<'_>) -> Option<Answer> {
        let claim = if function == WEBHOOK_FUNCTION { "" } else { self.team_claim.as_str() };
        let mut event = gateway_event(call.method, call.path, call.query, call.headers, call.body, claim);
        event["routeKey"] = Value::String(call.route_key.to_owned());
        event["requestContext"]["routeKey"] = Value::String(call.route_key.to_owned());
        let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
            return Some(gateway_answer(StatusCode::BAD_REQUEST, "Bad Request"));
        };
        let response = match function {
            "ConnectFunction" => connect::handle(&self.connect, request).await,
            "ApiFunction" => api::handle(&self.api, request).await,
            WEBHOOK_FUNCTION => webhook::handle(&self.webhook, request).await,
            _ => return None,
        };
        Some(match response {
            Ok(r) => {
                let (parts, body) = r.into_parts();
                let body = match body {
                    Body::Empty => Vec::new(),
                    Body::Text(t) => t.into_bytes(),
                    Body::Binary(b) => b,
                    _ => Vec::new(),
                };
                Answer { status: parts.status, headers: parts.headers, body }
            }
            // What API Gateway answers when the integration fails.
            Err(_) => gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        })
    }
}

/// The HTTP API's routes and the functions behind them.
pub struct Gateway {
    /// The functions.
    pub functions: Functions,
    /// The template's HTTP API routes.
    pub routes: Vec<ApiRoute>,
}

/// The router serving every path through [`dispatch`].
pub fn router(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(gateway)
}

/// An answer API Gateway (or a function URL) writes itself: `{"message": ...}`, not the
/// functions' error envelope.
pub fn gateway_answer(status: StatusCode, message: &str) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    Answer { status, headers, body: json!({ "message": message }).to_string().into_bytes() }
}

fn into_response(answer: Answer) -> HttpResponse<AxumBody> {
    let mut r = HttpResponse::new(AxumBody::from(answer.body));
    *r.status_mut() = answer.status;
    *r.headers_mut() = answer.headers;
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

async fn dispatch(State(gateway): State<Arc<Gateway>>, req: HttpRequest<AxumBody>) -> HttpResponse<AxumBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let method = parts.method.as_str();
    let bytes = match http_body_util::Limited::new(body, MAX_GATEWAY_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return into_response(gateway_answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")),
    };
    // One port serves both endpoints of the stack: the webhook function URL (which passes every
    // method and path to its function) and the HTTP API, whose routes come from the template.
    let (function, route_key) = if webhook::serves(&path) {
        if bytes.len() > MAX_FUNCTION_URL_BODY {
            return into_response(gateway_answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"));
        }
        (WEBHOOK_FUNCTION, "$default".to_owned())
    } else {
        match routes::select(&gateway.routes, method, &path) {
            Some(route) if route.path == "$default" => (route.function.as_str(), "$default".to_owned()),
            Some(route) => (route.function.as_str(), format!("{} {}", route.method, route.path)),
            // No route for this method and path: API Gateway answers before any function runs.
            None => return into_response(gateway_answer(StatusCode::NOT_FOUND, "Not Found")),
        }
    };
    let call =
        Call { route_key: &route_key, method, path: &path, query: &query, headers: &parts.headers, body: &bytes };
    let answer = gateway.functions.invoke(function, &call).await;
    into_response(answer.unwrap_or_else(|| gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")))
}

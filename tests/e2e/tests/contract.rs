//! The published contract, the deployed routes and the functions' routers agree: every
//! operation of openapi.yaml is a route of template.yaml (an HTTP API route, or the webhook
//! function URL's path) and the other way round, and each reaches a function that knows it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use local_host::Template;
use local_host::server::{Call, Functions, WEBHOOK_FUNCTION};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value as Json, json};
use yaml_serde::Value;

use crate::support::{demo, env};

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// A well-formed integration id that no test creates.
const SOME_ID: &str = "0123456789abcdef0123456789abcdef";

/// `(METHOD, path)` with every `{name}` written as `{}`.
type Operation = (String, String);

fn normalise(path: &str) -> String {
    path.split('/').map(|s| if s.starts_with('{') && s.ends_with('}') { "{}" } else { s }).collect::<Vec<_>>().join("/")
}

/// openapi.yaml's operations: `(implemented, planned)`; `x-status: planned` marks an operation
/// that no route serves yet.
fn openapi_operations() -> (BTreeSet<Operation>, BTreeSet<Operation>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("openapi.yaml");
    let doc: Value = yaml_serde::from_str(&text).expect("openapi.yaml is YAML");
    let (mut implemented, mut planned) = (BTreeSet::new(), BTreeSet::new());
    for (p, item) in doc["paths"].as_mapping().expect("paths") {
        let p = p.as_str().expect("path key");
        for (method, op) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("key");
            if !METHODS.contains(&method) {
                continue;
            }
            let entry = (method.to_ascii_uppercase(), normalise(p));
            if op.get("x-status").and_then(Value::as_str) == Some("planned") {
                planned.insert(entry);
            } else {
                implemented.insert(entry);
            }
        }
    }
    (implemented, planned)
}

/// template.yaml's routes with the function each invokes: the HTTP API's, and the webhook's
/// path on its function URL (which passes every path to the function; POST is the one it takes).
fn template_operations() -> Vec<(Operation, String)> {
    let template = Template::load(&local_host::default_template_path()).expect("template.yaml");
    let mut ops: Vec<(Operation, String)> = template
        .api_routes()
        .expect("every route names its function")
        .into_iter()
        .map(|r| ((r.method, normalise(&r.path)), r.function))
        .collect();
    for function in template.function_url_targets() {
        assert_eq!(function, WEBHOOK_FUNCTION, "a function URL the contract test does not know: {function}");
        ops.push((("POST".to_owned(), format!("{}{{}}", webhook::WEBHOOK_PATH)), function));
    }
    ops
}

/// A concrete path for a template: every parameter the given integration id.
fn concrete(template: &str, id: &str) -> String {
    template.replace("/{}/", &format!("/{id}/")).replace("/{}", &format!("/{id}"))
}

fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| *t == "{}" && !p.is_empty() || t == p)
}

/// What a function answers for a method and path its router does not know. (A route's own
/// 404 for a project, scan or finding that does not exist names the resource it looked for.)
fn unknown_to_function(status: u16, body: &Json) -> bool {
    let named = body["error"]["details"]["resource"].is_string();
    matches!((status, body["error"]["code"].as_str()), (404, Some("not_found")) | (405, Some("method_not_allowed")))
        && !named
}

#[test]
fn openapi_and_template_declare_the_same_routes() {
    let (implemented, planned) = openapi_operations();
    let routed: BTreeSet<Operation> = template_operations().into_iter().map(|(op, _)| op).collect();
    let only_openapi: Vec<_> = implemented.difference(&routed).collect();
    let only_template: Vec<_> = routed.difference(&implemented).collect();
    assert!(
        only_openapi.is_empty() && only_template.is_empty(),
        "openapi.yaml and template.yaml disagree.\n  documented, not routed: {only_openapi:?}\n  routed, not documented (or still x-status: planned): {only_template:?}"
    );
    assert!(!implemented.is_empty());
    // Every operation is built: nothing is left marked `x-status: planned`.
    assert_eq!(planned, BTreeSet::new());
}

/// Sends a request straight to one function, without the gateway's routing.
async fn call_function(functions: &Functions, function: &str, method: &str, path: &str) -> (u16, Json) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-team-id", HeaderValue::from_static("team-a"));
    let call = Call { route_key: "$default", method, path, query: "", headers: &headers, body: b"{}" };
    let answer = functions.invoke(function, &call).await.expect("a function the local host runs");
    (answer.status.as_u16(), serde_json::from_slice(&answer.body).unwrap_or(Json::Null))
}

#[tokio::test]
async fn every_documented_route_reaches_its_function_and_nothing_else_does() {
    let env = env("contract").start().await;
    let functions = &env.stack.gateway.functions;
    let (implemented, planned) = openapi_operations();
    let routed = template_operations();
    let body = || Some(("application/json", b"{}".to_vec()));
    // One integration of the caller's team for the requests through the host, one for the
    // direct calls. DELETE of the integration removes it, so deletions go last, the integration's
    // own (the shortest path) after those of anything under it.
    let through_host = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let direct = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let mut operations: Vec<&Operation> = implemented.iter().collect();
    operations.sort_by_key(|(method, template)| (method == "DELETE", std::cmp::Reverse(template.len())));

    // Every documented operation reaches a function that knows its method and path: whatever
    // it answers (200, 400 for the empty body, 401 for the webhook without a secret, ...), it
    // is not the 404 / 405 of an unknown route.
    for (method, template) in operations {
        let path = concrete(template, &through_host);
        let reply = env.request(method, Some("team-a"), &path, body()).await;
        assert!(
            !unknown_to_function(reply.status, &reply.body) && reply.body.get("message").is_none(),
            "{method} {path} is documented but answered like an unknown route: {} {}",
            reply.status,
            reply.raw
        );
        let function = &routed.iter().find(|(op, _)| op == &(method.clone(), template.clone())).expect("routed").1;
        let path = concrete(template, &direct);
        let (status, answer) = call_function(functions, function, method, &path).await;
        assert!(!unknown_to_function(status, &answer), "{function} does not serve {method} {path}: {status} {answer}");
    }

    // Planned operations, made-up paths and methods no route declares never reach a function:
    // API Gateway answers them itself (unless another route's template covers the request, as
    // GET /integrations/gitlab/{id} covers GET /integrations/gitlab/preflight).
    let gateway_404 = json!({ "message": "Not Found" });
    let mut unrouted: Vec<(String, String)> = planned.iter().map(|(m, t)| (m.clone(), concrete(t, SOME_ID))).collect();
    unrouted.push(("GET".into(), format!("/integrations/gitlab/{SOME_ID}/made-up")));
    unrouted.push(("GET".into(), "/integrations/github".into()));
    unrouted.push(("GET".into(), "/".into()));
    for (_, template) in implemented.iter().filter(|(_, t)| !t.starts_with(webhook::WEBHOOK_PATH)) {
        let path = concrete(template, SOME_ID);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !implemented.iter().any(|(m, t)| m == method && template_matches(t, &path)) {
                unrouted.push((method.to_owned(), path.clone()));
            }
        }
    }
    for (method, path) in &unrouted {
        let reply = env.request(method, Some("team-a"), path, body()).await;
        assert_eq!((reply.status, &reply.body), (404, &gateway_404), "{method} {path}: {}", reply.raw);
    }
    // A request that another route's template covers reaches that route's function, and the
    // function URL passes every method to the webhook function.
    let reply = env.request("GET", Some("team-a"), "/integrations/gitlab/preflight", None).await;
    assert_eq!((reply.status, reply.code()), (405, "method_not_allowed"), "{}", reply.raw);
    let reply = env.request("GET", None, &format!("{}{SOME_ID}", webhook::WEBHOOK_PATH), None).await;
    assert_eq!((reply.status, reply.code()), (405, "method_not_allowed"), "{}", reply.raw);

    // And no function's own router serves a planned or made-up path (asked about an integration
    // that exists, so that the 404 is the router's).
    let exists = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let made_up: Vec<(String, String)> = planned
        .iter()
        .map(|(m, t)| (m.clone(), concrete(t, &exists)))
        .chain([("GET".to_owned(), format!("/integrations/gitlab/{exists}/made-up"))])
        .chain([("POST".to_owned(), format!("{}{exists}/made-up", webhook::WEBHOOK_PATH))])
        .collect();
    for function in Functions::SERVED {
        for (method, path) in &made_up {
            let (status, body) = call_function(functions, function, method, path).await;
            assert!(unknown_to_function(status, &body), "{function} serves {method} {path}: {status} {body}");
        }
    }
}

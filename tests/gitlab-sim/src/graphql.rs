//! `POST /api/graphql`, only the `vulnerabilityCreate` mutation (EE, Ultimate:
//! ee/app/graphql/mutations/vulnerabilities/create.rb; doc/api/graphql/reference/_index.md,
//! "Mutation.vulnerabilityCreate"). Queries are not parsed beyond finding the mutation and its
//! `input`, given inline or as a variable; the answer carries a fixed set of fields.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::api::{Scopes, authenticate_optional, json as json_response, method_not_allowed};
use crate::server::{ReqCtx, RunningSim, Shared};

/// `Gitlab::Graphql::Authorize::AuthorizeResource::RESOURCE_ACCESS_ERROR`.
const RESOURCE_ACCESS_ERROR: &str =
    "The resource that you are attempting to access does not exist or you don't have permission to perform this action";

const SEVERITIES: [&str; 6] = ["INFO", "UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
const STATES: [&str; 4] = ["DETECTED", "CONFIRMED", "RESOLVED", "DISMISSED"];

/// A vulnerability created through `vulnerabilityCreate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimVulnerability {
    /// The number in `gid://gitlab/Vulnerability/<id>`.
    pub id: u64,
    pub project_id: u64,
    pub name: String,
    pub description: String,
    /// `DETECTED`, `CONFIRMED`, `RESOLVED` or `DISMISSED`.
    pub state: String,
    /// `INFO`, `UNKNOWN`, `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub severity: String,
    pub solution: Option<String>,
    /// The `scanner` input as sent (`id`, `name`, `url`, `version`, `vendor { name }`).
    pub scanner: Value,
    /// The `identifiers` input as sent (`name`, `url`, …).
    pub identifiers: Vec<Value>,
    pub author_id: u64,
    pub created_at: OffsetDateTime,
}

#[derive(Default)]
pub(crate) struct VulnerabilityStore {
    items: Vec<SimVulnerability>,
    /// Projects without the Ultimate feature `security_dashboard`.
    not_ultimate: BTreeSet<u64>,
}

/// `{"errors":[{"message":…}]}` with HTTP 200, as GraphQL validation errors come.
fn graphql_error(message: &str) -> Response {
    json_response(StatusCode::OK, &json!({"errors": [{ "message": message }]}))
}

/// Line and column (1-based) of byte `at` in `text`.
fn location(text: &str, at: usize) -> Value {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    json!({ "line": line, "column": column })
}

/// The mutation field was resolved but refused: `data.vulnerabilityCreate` is null.
fn resource_error(query: &str, at: usize) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "data": { "vulnerabilityCreate": null },
            "errors": [{
                "message": RESOURCE_ACCESS_ERROR,
                "locations": [location(query, at)],
                "path": ["vulnerabilityCreate"],
            }],
        }),
    )
}

pub(crate) fn handle(shared: &Shared, ctx: &ReqCtx) -> Response {
    if ctx.method != Method::POST {
        return method_not_allowed("OPTIONS, GET, HEAD, POST");
    }
    // GraphqlController answers an unknown, expired or revoked token in GraphQL's shape.
    let Ok(user) = authenticate_optional(shared, ctx, Scopes::Any) else {
        return json_response(StatusCode::UNAUTHORIZED, &json!({"errors": [{"message": "Invalid token"}]}));
    };
    let Ok(request) = serde_json::from_slice::<Value>(&ctx.body) else {
        return json_response(StatusCode::BAD_REQUEST, &json!({"errors": [{"message": "Invalid JSON"}]}));
    };
    let query = request.get("query").and_then(Value::as_str).unwrap_or_default().to_string();
    if query.trim().is_empty() {
        return graphql_error("No query string was present");
    }
    let variables = request.get("variables").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    let Some(at) = query.find("vulnerabilityCreate") else {
        return graphql_error("gitlab-sim only implements the vulnerabilityCreate mutation");
    };
    if !shared.version.ends_with("-ee") {
        return graphql_error("Field 'vulnerabilityCreate' doesn't exist on type 'Mutation'");
    }
    let input = match input_argument(&query[at..], &variables) {
        Ok(input) => input,
        Err(message) => return graphql_error(&message),
    };
    let input_error = |message: String| {
        graphql_error(&format!(
            "Variable $input of type VulnerabilityCreateInput! was provided invalid value: {message}"
        ))
    };
    let text = |key: &str| input.get(key).and_then(Value::as_str).map(str::to_string);
    for key in ["project", "name", "description"] {
        if text(key).is_none() {
            return input_error(format!("{key} (Expected value to not be null)"));
        }
    }
    let Some(scanner) = input.get("scanner").filter(|v| v.is_object()).cloned() else {
        return input_error("scanner (Expected value to not be null)".into());
    };
    let Some(identifiers) = input.get("identifiers").and_then(Value::as_array).cloned() else {
        return input_error("identifiers (Expected value to not be null)".into());
    };
    let severity = text("severity").unwrap_or_else(|| "UNKNOWN".into()).to_ascii_uppercase();
    if !SEVERITIES.contains(&severity.as_str()) {
        return input_error(format!("severity (Expected \"{severity}\" to be one of: {})", SEVERITIES.join(", ")));
    }
    let state = text("state").unwrap_or_else(|| "DETECTED".into()).to_ascii_uppercase();
    if !STATES.contains(&state.as_str()) {
        return input_error(format!("state (Expected \"{state}\" to be one of: {})", STATES.join(", ")));
    }
    let gid = text("project").unwrap_or_default();
    let Some(project_id) = gid.strip_prefix("gid://gitlab/Project/").and_then(|id| id.parse::<u64>().ok()) else {
        return input_error(format!("project (\"{gid}\" is not a valid Global ID)"));
    };

    // `authorized_find!` with `admin_vulnerability`: an `api` token of a member, on a project
    // with the Ultimate feature; anything else is the resource error.
    let project = shared.projects().get(project_id).cloned();
    let Some(entry) = user else { return resource_error(&query, at) };
    let user = entry.token.user.clone();
    let allowed = project.as_ref().is_some_and(|p| {
        p.readable_by(Some(&user))
            && (user.is_admin || p.members.as_ref().is_none_or(|ids| ids.contains(&user.id)))
            && entry.token.scopes.iter().any(|s| s == "api")
    });
    let ultimate = !shared.vulnerabilities().not_ultimate.contains(&project_id);
    let Some(project) = project.filter(|_| allowed && ultimate) else { return resource_error(&query, at) };
    if identifiers.is_empty() {
        // GitLab answered 500 here (gitlab-org/gitlab#373760).
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"errors": [{"message": "Internal server error"}]}),
        );
    }

    let now = OffsetDateTime::now_utc();
    let vulnerability = {
        let mut store = shared.vulnerabilities();
        let record = SimVulnerability {
            id: store.items.len() as u64 + 1,
            project_id,
            name: text("name").unwrap_or_default(),
            description: text("description").unwrap_or_default(),
            state: state.clone(),
            severity: severity.clone(),
            solution: text("solution"),
            scanner,
            identifiers,
            author_id: user.id,
            created_at: now,
        };
        store.items.push(record.clone());
        record
    };
    let path =
        format!("{}/{}/-/security/vulnerabilities/{}", ctx.base_path, project.path_with_namespace, vulnerability.id);
    json_response(
        StatusCode::OK,
        &json!({
            "data": {
                "vulnerabilityCreate": {
                    "vulnerability": {
                        "id": format!("gid://gitlab/Vulnerability/{}", vulnerability.id),
                        "title": vulnerability.name,
                        "name": vulnerability.name,
                        "description": vulnerability.description,
                        "state": state,
                        "severity": severity,
                        "reportType": "GENERIC",
                        "solution": vulnerability.solution,
                        "detectedAt": crate::api::timestamp(now),
                        "vulnerabilityPath": path,
                        "webUrl": format!("{}{path}", ctx.origin),
                        "project": { "id": format!("gid://gitlab/Project/{project_id}") },
                    },
                    "errors": [],
                }
            }
        }),
    )
}

/// The `input:` argument of the field starting `field`: a variable or an inline object.
fn input_argument(field: &str, variables: &Value) -> Result<Value, String> {
    let mut parser = Parser { text: field.as_bytes(), at: "vulnerabilityCreate".len(), variables };
    parser.skip();
    if !parser.eat(b'(') {
        return Err("Field 'vulnerabilityCreate' is missing required arguments: input".into());
    }
    loop {
        parser.skip();
        if parser.eat(b')') {
            return Err("Field 'vulnerabilityCreate' is missing required arguments: input".into());
        }
        let name = parser.name().ok_or("Parse error on the arguments of vulnerabilityCreate")?;
        parser.skip();
        if !parser.eat(b':') {
            return Err("Parse error on the arguments of vulnerabilityCreate".into());
        }
        let value = parser.value()?;
        if name == "input" {
            return if value.is_object() {
                Ok(value)
            } else {
                Err("Variable $input of type VulnerabilityCreateInput! was provided invalid value".into())
            };
        }
    }
}

/// Just enough of GraphQL's value syntax for inline input objects.
struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    variables: &'a Value,
}

impl Parser<'_> {
    /// Whitespace, commas and `#` comments.
    fn skip(&mut self) {
        while let Some(&c) = self.text.get(self.at) {
            if c == b'#' {
                while self.text.get(self.at).is_some_and(|c| *c != b'\n') {
                    self.at += 1;
                }
            } else if c.is_ascii_whitespace() || c == b',' {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.text.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.at;
        while self.text.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip();
        let error = || "Parse error in an argument value of vulnerabilityCreate".to_string();
        match self.text.get(self.at).copied() {
            Some(b'$') => {
                self.at += 1;
                let name = self.name().ok_or_else(error)?;
                Ok(self.variables.get(&name).cloned().unwrap_or(Value::Null))
            }
            Some(b'{') => {
                self.at += 1;
                let mut map = Map::new();
                loop {
                    self.skip();
                    if self.eat(b'}') {
                        return Ok(Value::Object(map));
                    }
                    let key = self.name().ok_or_else(error)?;
                    self.skip();
                    if !self.eat(b':') {
                        return Err(error());
                    }
                    let value = self.value()?;
                    map.insert(key, value);
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip();
                    if self.eat(b']') {
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value()?);
                }
            }
            Some(b'"') => self.string().ok_or_else(error).map(Value::String),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.at;
                self.at += 1;
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    self.at += 1;
                }
                let raw = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
                serde_json::from_str::<Value>(&raw).map_err(|_| error())
            }
            Some(_) => {
                let name = self.name().ok_or_else(error)?;
                Ok(match name.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    // Enum values travel as their names.
                    _ => Value::String(name),
                })
            }
            None => Err(error()),
        }
    }

    /// A `"…"` string (JSON escapes) or a `"""…"""` block string.
    fn string(&mut self) -> Option<String> {
        if self.text[self.at..].starts_with(b"\"\"\"") {
            let rest = &self.text[self.at + 3..];
            let end = rest.windows(3).position(|w| w == b"\"\"\"")?;
            self.at += 3 + end + 3;
            return Some(String::from_utf8_lossy(&rest[..end]).replace("\\\"\"\"", "\"\"\""));
        }
        let start = self.at;
        self.at += 1;
        while let Some(&c) = self.text.get(self.at) {
            self.at += 1;
            match c {
                b'\\' => self.at += 1,
                b'"' => return serde_json::from_slice::<String>(&self.text[start..self.at]).ok(),
                _ => {}
            }
        }
        None
    }
}

impl RunningSim {
    /// Whether a project has GitLab Ultimate's `security_dashboard` (the default); without it
    /// `vulnerabilityCreate` answers GitLab's resource error.
    pub fn set_ultimate(&self, project_id: u64, ultimate: bool) {
        let mut store = self.shared().vulnerabilities();
        if ultimate {
            store.not_ultimate.remove(&project_id);
        } else {
            store.not_ultimate.insert(project_id);
        }
    }

    /// The vulnerabilities created in a project through `vulnerabilityCreate`, oldest first.
    pub fn vulnerabilities(&self, project_id: u64) -> Vec<SimVulnerability> {
        self.shared().vulnerabilities().items.iter().filter(|v| v.project_id == project_id).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_input_objects_parse() {
        let query = r#"vulnerabilityCreate(input: {
            project: "gid://gitlab/Project/1", name: "Leak", description: """multi
line""", # a comment
            scanner: {id: "s", name: "S", vendor: {name: "V"}}, identifiers: [{name: "CWE-798", url: $url}],
            severity: HIGH, confidence: 3, flag: true
        }) { vulnerability { id } errors }"#;
        let vars = json!({"url": "https://cwe.mitre.org/data/definitions/798.html"});
        let input = input_argument(query, &vars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(input["name"], "Leak");
        assert_eq!(input["description"], "multi\nline");
        assert_eq!(input["severity"], "HIGH");
        assert_eq!(input["confidence"], 3);
        assert_eq!(input["flag"], true);
        assert_eq!(input["scanner"]["vendor"]["name"], "V");
        assert_eq!(input["identifiers"][0]["url"], "https://cwe.mitre.org/data/definitions/798.html");
        let by_variable =
            input_argument("vulnerabilityCreate(input: $input) { errors }", &json!({"input": {"name": "x"}}));
        assert_eq!(by_variable, Ok(json!({"name": "x"})));
        assert!(input_argument("vulnerabilityCreate { errors }", &json!({})).is_err());
    }

    #[test]
    fn locations_are_one_based() {
        assert_eq!(location("mutation {\n  vulnerabilityCreate", 13), json!({"line": 2, "column": 3}));
    }
}

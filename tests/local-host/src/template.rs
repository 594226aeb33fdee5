//! Reads template.yaml, the one source of truth for resource and environment names, and
//! resolves the few intrinsic functions the local stack needs (`Ref`, `GetAtt`, `Sub`).

use std::collections::HashMap;
use std::path::Path;

use yaml_serde::Value;

use crate::routes::ApiRoute;

/// Failure to read or understand the template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// File could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not YAML.
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] yaml_serde::Error),
    /// Structure not as expected.
    #[error("template: {0}")]
    Shape(String),
}

/// A parsed SAM template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

/// What logical ids stand for locally: table names, queue URLs and ARNs.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// `Ref` values by logical id.
    pub refs: HashMap<String, String>,
    /// `GetAtt` values by `LogicalId.Attribute`.
    pub attrs: HashMap<String, String>,
    /// Pseudo parameters (`AWS::Region`, `AWS::StackName`, ...).
    pub pseudo: HashMap<String, String>,
}

impl Template {
    /// Loads a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Io { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let root: Value = yaml_serde::from_str(text)?;
        if root.get("Resources").and_then(Value::as_mapping).is_none() {
            return Err(TemplateError::Shape("no Resources section".into()));
        }
        Ok(Self { root })
    }

    /// `(logical id, properties)` of every resource of one type, in template order.
    pub fn resources_of_type(&self, kind: &str) -> Vec<(String, Value)> {
        let Some(resources) = self.root.get("Resources").and_then(Value::as_mapping) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .filter_map(|(id, r)| Some((id.as_str()?.to_owned(), r.get("Properties").cloned().unwrap_or(Value::Null))))
            .collect()
    }

    /// Default values of the template's parameters.
    pub fn parameter_defaults(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if let Some(params) = self.root.get("Parameters").and_then(Value::as_mapping) {
            for (k, v) in params {
                if let (Some(k), Some(d)) = (k.as_str(), v.get("Default")) {
                    let text = match d {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    out.insert(k.to_owned(), text);
                }
            }
        }
        out
    }

    /// The interval of a function's `Schedule` event when it is a `rate(...)` expression
    /// (resolving a `!Ref` to a parameter default).
    pub fn schedule_interval(&self, function: &str) -> Option<std::time::Duration> {
        let events = self.root.get("Resources")?.get(function)?.get("Properties")?.get("Events")?.as_mapping()?;
        let params = self.parameter_defaults();
        events.values().filter(|e| e.get("Type").and_then(Value::as_str) == Some("Schedule")).find_map(|e| {
            let expr = resolve(e.get("Properties")?.get("Schedule")?, &params, &Physical::default())?;
            parse_rate(&expr)
        })
    }

    /// The environment a function gets: Globals merged with the function's own variables,
    /// with every value resolvable locally. Values that name resources the local stack does
    /// not create (the API's host, the KMS key) are left out.
    pub fn function_environment(
        &self,
        function: &str,
        physical: &Physical,
    ) -> Result<HashMap<String, String>, TemplateError> {
        let params = self.parameter_defaults();
        let mut vars = HashMap::new();
        let global = self
            .root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let own = self
            .root
            .get("Resources")
            .and_then(|r| r.get(function))
            .ok_or_else(|| TemplateError::Shape(format!("no resource {function}")))?
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        for (k, v) in global.iter().chain(own.iter()) {
            let Some(k) = k.as_str() else { continue };
            match resolve(v, &params, physical) {
                Some(value) => {
                    vars.insert(k.to_owned(), value);
                }
                None => {
                    vars.remove(k);
                }
            }
        }
        Ok(vars)
    }
}

impl Template {
    /// Every route of the template's APIs: `AWS::ApiGatewayV2::Route` resources (route key, and
    /// the function behind the target integration) and the `HttpApi` / `Api` events of
    /// serverless functions. A route whose function cannot be told is an error, not skipped.
    pub fn api_routes(&self) -> Result<Vec<ApiRoute>, TemplateError> {
        let mut routes = Vec::new();
        for (id, props) in self.resources_of_type("AWS::ApiGatewayV2::Route") {
            let key = props.get("RouteKey").and_then(Value::as_str).ok_or_else(|| shape(&id, "no RouteKey"))?;
            let integration = props
                .get("Target")
                .and_then(intrinsic_text)
                .and_then(|t| t.strip_prefix("integrations/").map(|i| i.trim_start_matches("${").trim_end_matches('}')))
                .ok_or_else(|| shape(&id, "Target is not integrations/${Integration}"))?
                .to_owned();
            let function = self
                .resource_properties(&integration)
                .and_then(|p| p.get("IntegrationUri"))
                .and_then(function_of)
                .ok_or_else(|| shape(&id, "its integration does not name a function"))?;
            routes.push(ApiRoute::from_route_key(key, function).ok_or_else(|| shape(&id, "bad RouteKey"))?);
        }
        for (function, props) in self.resources_of_type("AWS::Serverless::Function") {
            let Some(events) = props.get("Events").and_then(Value::as_mapping) else { continue };
            for (name, event) in events {
                let kind = event.get("Type").and_then(Value::as_str);
                if !matches!(kind, Some("HttpApi" | "Api")) {
                    continue;
                }
                let p = event.get("Properties");
                let method = p.and_then(|p| p.get("Method")).and_then(Value::as_str);
                let path = p.and_then(|p| p.get("Path")).and_then(Value::as_str);
                let key = match (method, path) {
                    (Some(m), Some(path)) => format!("{} {path}", if m == "*" { "ANY" } else { m }),
                    // An HttpApi event without method and path is the API's $default route.
                    (None, None) if kind == Some("HttpApi") => "$default".to_owned(),
                    _ => return Err(shape(&function, &format!("event {name:?} needs Method and Path"))),
                };
                routes.push(
                    ApiRoute::from_route_key(&key, function.clone())
                        .ok_or_else(|| shape(&function, "bad event path"))?,
                );
            }
        }
        Ok(routes)
    }

    /// Logical ids of the functions that have a function URL (`AWS::Lambda::Url` or
    /// `FunctionUrlConfig`), which receive every method and path sent to that URL.
    pub fn function_url_targets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .resources_of_type("AWS::Lambda::Url")
            .iter()
            .filter_map(|(_, p)| p.get("TargetFunctionArn").and_then(function_of))
            .collect();
        for (id, props) in self.resources_of_type("AWS::Serverless::Function") {
            if props.get("FunctionUrlConfig").is_some() && !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    fn resource_properties(&self, logical_id: &str) -> Option<&Value> {
        self.root.get("Resources")?.get(logical_id)?.get("Properties")
    }
}

fn shape(resource: &str, what: &str) -> TemplateError {
    TemplateError::Shape(format!("{resource}: {what}"))
}

/// `(name, argument)` of an intrinsic in either form (`!Sub x` or `{"Fn::Sub": x}`).
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_owned(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            Some((k.as_str()?.trim_start_matches("Fn::").to_owned(), inner))
        }
        _ => None,
    }
}

/// A plain string or the text of a one-string `Sub`.
fn intrinsic_text(v: &Value) -> Option<&str> {
    match intrinsic(v) {
        Some((name, Value::String(text))) if name == "Sub" => Some(text),
        Some(_) => None,
        None => v.as_str(),
    }
}

/// The function an ARN-valued property points at: `!GetAtt F.Arn`, `!Ref F`, or a `!Sub` whose
/// only reference is `${F.Arn}` or `${F}`.
fn function_of(v: &Value) -> Option<String> {
    let (name, arg) = intrinsic(v)?;
    match (name.as_str(), arg) {
        ("GetAtt", Value::String(path)) => path.strip_suffix(".Arn").map(str::to_owned),
        ("GetAtt", Value::Sequence(parts)) if parts.get(1).and_then(Value::as_str) == Some("Arn") => {
            parts.first().and_then(Value::as_str).map(str::to_owned)
        }
        ("Ref", Value::String(id)) => Some(id.clone()),
        ("Sub", Value::String(text)) => {
            let refs: Vec<&str> = text
                .split("${")
                .skip(1)
                .filter_map(|r| r.split_once('}').map(|(name, _)| name))
                .filter(|r| !r.starts_with("AWS::"))
                .collect();
            match refs.as_slice() {
                [one] => Some(one.trim_end_matches(".Arn").to_owned()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Resolves a scalar or an intrinsic; `None` when it refers to something not available.
pub fn resolve(v: &Value, params: &HashMap<String, String>, physical: &Physical) -> Option<String> {
    let lookup_ref = |name: &str| -> Option<String> {
        physical.pseudo.get(name).or_else(|| physical.refs.get(name)).or_else(|| params.get(name)).cloned()
    };
    let lookup_att = |path: &str| physical.attrs.get(path).cloned();
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            match (tag.trim_start_matches('!'), &t.value) {
                ("Ref", Value::String(name)) => lookup_ref(name),
                ("GetAtt", Value::String(path)) => lookup_att(path),
                ("GetAtt", Value::Sequence(parts)) => {
                    let p: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                    lookup_att(&p.join("."))
                }
                ("Sub", Value::String(text)) => substitute(text, &lookup_ref, &lookup_att),
                _ => None,
            }
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            match (k.as_str()?, inner) {
                ("Ref", Value::String(name)) => lookup_ref(name),
                ("Fn::GetAtt", Value::Sequence(parts)) => {
                    let p: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                    lookup_att(&p.join("."))
                }
                ("Fn::Sub", Value::String(text)) => substitute(text, &lookup_ref, &lookup_att),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `rate(5 minutes)`, `rate(1 hour)`, `rate(2 days)`.
pub fn parse_rate(expr: &str) -> Option<std::time::Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    (n > 0).then(|| std::time::Duration::from_secs(n * secs))
}

fn substitute(
    text: &str,
    lookup_ref: &dyn Fn(&str) -> Option<String>,
    lookup_att: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 2..end];
        let value =
            if name.contains('.') && !name.starts_with("AWS::") { lookup_att(name)? } else { lookup_ref(name)? };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"
Parameters:
  TeamClaim: { Type: String, Default: team_id }
Globals:
  Function:
    Environment:
      Variables:
        GLOBAL_ONE: one
Resources:
  Table: { Type: AWS::DynamoDB::Table, Properties: {} }
  Queue: { Type: AWS::SQS::Queue }
  Key: { Type: AWS::KMS::Key }
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          TABLE_NAME: !Ref Table
          QUEUE_ARN: !GetAtt Queue.Arn
          LONG: { "Fn::GetAtt": [Queue, Arn] }
          PREFIX: !Sub "${AWS::StackName}/integrations/"
          CLAIM: !Ref TeamClaim
          KEY: !Ref Key
          HOST: !Sub "${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
"#;

    #[test]
    fn resolves_refs_attributes_subs_and_drops_unknowns() {
        let t = Template::parse(T).expect("parses");
        let mut p = Physical::default();
        p.refs.insert("Table".into(), "local-Table".into());
        p.attrs.insert("Queue.Arn".into(), "arn:aws:sqs:us-east-1:123456789012:local-Queue".into());
        p.pseudo.insert("AWS::StackName".into(), "local".into());
        p.pseudo.insert("AWS::Region".into(), "us-east-1".into());
        let env = t.function_environment("Fn", &p).expect("env");
        assert_eq!(env["TABLE_NAME"], "local-Table");
        assert_eq!(env["QUEUE_ARN"], "arn:aws:sqs:us-east-1:123456789012:local-Queue");
        assert_eq!(env["LONG"], env["QUEUE_ARN"]);
        assert_eq!(env["PREFIX"], "local/integrations/");
        assert_eq!(env["CLAIM"], "team_id");
        assert_eq!(env["GLOBAL_ONE"], "one");
        assert!(!env.contains_key("KEY"));
        assert!(!env.contains_key("HOST"));
        assert_eq!(t.resources_of_type("AWS::DynamoDB::Table").len(), 1);
    }

    const ROUTES: &str = r#"
Resources:
  Api: { Type: AWS::ApiGatewayV2::Api, Properties: { ProtocolType: HTTP } }
  ConnectFunction: { Type: AWS::Serverless::Function, Properties: {} }
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Read: { Type: HttpApi, Properties: { Method: get, Path: "/things/{id}" } }
        Queue: { Type: SQS, Properties: { Queue: q } }
  HookFunction: { Type: AWS::Serverless::Function, Properties: {} }
  HookUrl: { Type: AWS::Lambda::Url, Properties: { TargetFunctionArn: !GetAtt HookFunction.Arn, AuthType: NONE } }
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt ConnectFunction.Arn }
  LongFormIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { ApiId: !Ref Api, IntegrationUri: { "Fn::GetAtt": [OtherFunction, Arn] } }
  RouteOne:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: POST /integrations/gitlab, Target: !Sub "integrations/${ConnectIntegration}" }
  RouteTwo:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: $default, Target: { "Fn::Sub": "integrations/${LongFormIntegration}" } }
"#;

    #[test]
    fn api_routes_come_from_route_resources_and_function_events() {
        let t = Template::parse(ROUTES).expect("parses");
        let routes: Vec<(String, String, String)> =
            t.api_routes().expect("routes").into_iter().map(|r| (r.method, r.path, r.function)).collect();
        let want = |m: &str, p: &str, f: &str| (m.to_owned(), p.to_owned(), f.to_owned());
        assert_eq!(
            routes,
            vec![
                want("POST", "/integrations/gitlab", "ConnectFunction"),
                want("ANY", "$default", "OtherFunction"),
                want("GET", "/things/{id}", "OtherFunction"),
            ]
        );
        assert_eq!(t.function_url_targets(), vec!["HookFunction".to_owned()]);
        let broken = ROUTES.replace("IntegrationUri: !GetAtt ConnectFunction.Arn", "IntegrationUri: arn:aws:lambda:x");
        assert!(Template::parse(&broken).expect("parses").api_routes().is_err());
    }

    #[test]
    fn rate_expressions_parse() {
        assert_eq!(parse_rate("rate(1 hour)"), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_rate("rate(5 minutes)"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(parse_rate("cron(0 * * * ? *)"), None);
        assert_eq!(parse_rate("rate(0 hours)"), None);
    }
}

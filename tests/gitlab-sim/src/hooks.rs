//! Project webhooks as GitLab keeps them: the hooks API (doc/api/project_webhooks.md), deliveries
//! with GitLab's headers and payload shapes (doc/user/project/integrations/webhook_events.md),
//! signed with a signing token on 19.0+ (Standard Webhooks), and auto-disabling after
//! consecutive failures (app/models/concerns/web_hooks/auto_disabling.rb, 17.11+ rules).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{
    API_ONLY, API_WIDE, Scopes, authenticate_optional, json as json_response, method_not_allowed, ok_json,
};
use crate::config::SimProject;
use crate::server::{ReqCtx, Shared, splitmix64};

/// GitLab's `TEMPORARILY_DISABLED_FAILURE_THRESHOLD` (the 4th consecutive failure disables).
const TEMPORARY_AFTER: u32 = 4;
/// GitLab's `PERMANENTLY_DISABLED_FAILURE_THRESHOLD` (the 40th disables for good).
const PERMANENT_AFTER: u32 = 40;
/// GitLab's default `webhook_timeout`.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

const MR: &str = include_str!("../../fixtures/webhooks/merge_request.json");
const PUSH: &str = include_str!("../../fixtures/webhooks/push.json");
const TAG_PUSH: &str = include_str!("../../fixtures/webhooks/tag_push.json");
const NOTE: &str = include_str!("../../fixtures/webhooks/note_merge_request.json");
const VULNERABILITY: &str = include_str!("../../fixtures/webhooks/vulnerability.json");
const ACCESS_TOKEN: &str = include_str!("../../fixtures/webhooks/resource_access_token_project.json");

/// The event flags a hook can carry and the trigger names of the test endpoint.
const EVENT_FLAGS: [&str; 7] = [
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "note_events",
    "confidential_note_events",
    "vulnerability_events",
    "resource_access_token_events",
];

/// One project hook.
#[derive(Clone, Debug)]
pub struct SimHook {
    pub id: u64,
    pub project_id: u64,
    pub url: String,
    /// Never returned by the API (GitLab keeps it write-only).
    pub token: Option<String>,
    /// `whsec_...`; kept only on 19.0+ instances.
    pub signing_token: Option<String>,
    pub events: Vec<&'static str>,
    pub enable_ssl_verification: bool,
    pub recent_failures: u32,
    pub disabled_until: Option<OffsetDateTime>,
    pub permanently_disabled: bool,
    pub created_at: OffsetDateTime,
}

impl SimHook {
    /// GitLab's `alert_status`: `executable`, `temporarily_disabled` or `disabled`.
    pub fn alert_status(&self, now: OffsetDateTime) -> &'static str {
        if self.permanently_disabled {
            "disabled"
        } else if self.disabled_until.is_some_and(|until| until > now) {
            "temporarily_disabled"
        } else {
            "executable"
        }
    }

    fn record(&mut self, ok: bool, now: OffsetDateTime) {
        if ok {
            self.recent_failures = 0;
            self.disabled_until = None;
            self.permanently_disabled = false;
            return;
        }
        self.recent_failures += 1;
        if self.recent_failures >= PERMANENT_AFTER {
            self.permanently_disabled = true;
            self.disabled_until = None;
        } else if self.recent_failures >= TEMPORARY_AFTER {
            // 1 minute × 2^(failures − 3), at most 24 h (gitlab-api.md 4.4).
            let exp = (self.recent_failures - 3).min(11);
            let backoff = (60i64 << exp).min(24 * 3600);
            self.disabled_until = Some(now + time::Duration::seconds(backoff));
        }
    }
}

/// Every hook of the instance.
#[derive(Default)]
pub(crate) struct Hooks {
    items: Vec<SimHook>,
    next_id: u64,
}

impl Hooks {
    pub(crate) fn all(&self) -> Vec<SimHook> {
        self.items.clone()
    }

    pub(crate) fn expire_backoff(&mut self) {
        for hook in &mut self.items {
            hook.disabled_until = None;
        }
    }
}

/// An event the simulator can raise on a project (also accepted as JSON by
/// `POST /-/sim/projects/:id/events`).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SimEvent {
    /// A merge request event; `oldrev` marks an update that pushed code.
    MergeRequest {
        iid: u64,
        action: String,
        #[serde(default = "default_sha")]
        head_sha: String,
        #[serde(default)]
        oldrev: Option<String>,
        #[serde(default = "default_source")]
        source_branch: String,
        #[serde(default)]
        target_branch: Option<String>,
    },
    /// A push to a branch.
    Push {
        #[serde(default)]
        branch: Option<String>,
        #[serde(default = "default_before")]
        before: String,
        #[serde(default = "default_sha")]
        after: String,
    },
    /// A tag push.
    TagPush { tag: String },
    /// A comment on merge request `iid` by user `author_id`.
    Note { author_id: u64, iid: u64 },
    /// A vulnerability changed state.
    Vulnerability { state: String },
    /// A project access token (of bot user `user_id`) expires soon.
    AccessTokenExpiring { user_id: u64 },
}

fn default_sha() -> String {
    "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into()
}

fn default_before() -> String {
    "95790bf891e76fee5e1747ab589903a6a1f80f22".into()
}

fn default_source() -> String {
    "feature".into()
}

impl SimEvent {
    /// The hook flag that subscribes to it and its `X-Gitlab-Event`.
    fn flag_and_header(&self) -> (&'static str, &'static str) {
        match self {
            SimEvent::MergeRequest { .. } => ("merge_requests_events", "Merge Request Hook"),
            SimEvent::Push { .. } => ("push_events", "Push Hook"),
            SimEvent::TagPush { .. } => ("tag_push_events", "Tag Push Hook"),
            SimEvent::Note { .. } => ("note_events", "Note Hook"),
            SimEvent::Vulnerability { .. } => ("vulnerability_events", "Vulnerability Hook"),
            SimEvent::AccessTokenExpiring { .. } => ("resource_access_token_events", "Resource Access Token Hook"),
        }
    }

    /// GitLab's documented payload for the event, filled in for `project`.
    fn payload(&self, project: &SimProject, origin: &str) -> Value {
        let template = match self {
            SimEvent::MergeRequest { .. } => MR,
            SimEvent::Push { .. } => PUSH,
            SimEvent::TagPush { .. } => TAG_PUSH,
            SimEvent::Note { .. } => NOTE,
            SimEvent::Vulnerability { .. } => VULNERABILITY,
            SimEvent::AccessTokenExpiring { .. } => ACCESS_TOKEN,
        };
        let mut v: Value = serde_json::from_str(template).unwrap_or(Value::Null);
        let default_branch = project.default_branch.clone().unwrap_or_else(|| "main".into());
        let web_url = format!("{origin}/{}", project.path_with_namespace);
        let project_json = json!({
            "id": project.id,
            "name": project.name.clone().unwrap_or_else(|| project.path_with_namespace.rsplit('/').next().unwrap_or("").to_owned()),
            "web_url": web_url,
            "path_with_namespace": project.path_with_namespace,
            "default_branch": default_branch,
            "visibility_level": match project.visibility.as_str() { "public" => 20, "internal" => 10, _ => 0 },
        });
        if let Some(obj) = v.get_mut("project").and_then(Value::as_object_mut) {
            for (k, val) in project_json.as_object().into_iter().flatten() {
                obj.insert(k.clone(), val.clone());
            }
        }
        match self {
            SimEvent::MergeRequest { iid, action, head_sha, oldrev, source_branch, target_branch } => {
                let attrs = &mut v["object_attributes"];
                attrs["iid"] = json!(iid);
                attrs["action"] = json!(action);
                attrs["last_commit"]["id"] = json!(head_sha);
                attrs["source_branch"] = json!(source_branch);
                attrs["target_branch"] = json!(target_branch.clone().unwrap_or_else(|| default_branch.clone()));
                attrs["target_project_id"] = json!(project.id);
                attrs["source_project_id"] = json!(project.id);
                attrs["state"] = json!(match action.as_str() {
                    "merge" => "merged",
                    "close" => "closed",
                    _ => "opened",
                });
                if let Some(rev) = oldrev {
                    attrs["oldrev"] = json!(rev);
                }
            }
            SimEvent::Push { branch, before, after } => {
                v["ref"] = json!(format!("refs/heads/{}", branch.clone().unwrap_or(default_branch)));
                v["before"] = json!(before);
                v["after"] = json!(after);
                v["checkout_sha"] = if after.bytes().all(|b| b == b'0') { Value::Null } else { json!(after) };
                v["project_id"] = json!(project.id);
            }
            SimEvent::TagPush { tag } => {
                v["ref"] = json!(format!("refs/tags/{tag}"));
                v["project_id"] = json!(project.id);
            }
            SimEvent::Note { author_id, iid } => {
                v["object_attributes"]["author_id"] = json!(author_id);
                v["object_attributes"]["project_id"] = json!(project.id);
                v["user"]["id"] = json!(author_id);
                v["merge_request"]["iid"] = json!(iid);
                v["project_id"] = json!(project.id);
            }
            SimEvent::Vulnerability { state } => {
                v["object_attributes"]["state"] = json!(state);
                v["object_attributes"]["project_id"] = json!(project.id);
            }
            SimEvent::AccessTokenExpiring { user_id } => {
                v["object_attributes"]["user_id"] = json!(user_id);
            }
        }
        v
    }
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub hook_id: u64,
    /// The receiver's status, or `None` when it could not be reached in time.
    pub status: Option<u16>,
    /// The `Idempotency-Key` sent (resends reuse it).
    pub idempotency_key: String,
    /// The receiver's answer (GitLab keeps at most 8 KB of it).
    pub body: String,
}

fn version_major(version: &str) -> u32 {
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

fn uuid(seed: u64) -> String {
    let a = splitmix64(seed);
    let b = splitmix64(a);
    let hex = format!("{a:016x}{b:016x}");
    format!("{}-{}-4{}-a{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

fn seed() -> u64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    nanos ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">` keyed with the decoded `whsec_` key.
fn sign(signing_token: &str, id: &str, timestamp: &str, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(signing_token.strip_prefix("whsec_")?).ok()?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// Sends `event` to every hook of the project subscribed to it that is not disabled (GitLab does
/// not deliver to disabled hooks at all), counting failures as GitLab does.
pub(crate) async fn deliver(shared: &Shared, project_id: u64, event: &SimEvent, origin: &str) -> Vec<Delivered> {
    let Some(project) = shared.projects().get(project_id).cloned() else {
        return Vec::new();
    };
    let now = OffsetDateTime::now_utc();
    let (flag, header) = event.flag_and_header();
    let targets: Vec<SimHook> = shared
        .hooks()
        .items
        .iter()
        .filter(|h| h.project_id == project_id && h.events.contains(&flag) && h.alert_status(now) == "executable")
        .cloned()
        .collect();
    let body = event.payload(&project, origin).to_string();
    let event_uuid = uuid(seed());
    let mut out = Vec::new();
    for hook in targets {
        let delivered = send(shared, &hook, header, &body, &event_uuid, &uuid(seed()), origin).await;
        if let Some(h) = shared.hooks().items.iter_mut().find(|h| h.id == hook.id) {
            h.record(delivered.status.is_some_and(|s| (200..400).contains(&s)), OffsetDateTime::now_utc());
        }
        out.push(delivered);
    }
    out
}

async fn send(
    shared: &Shared,
    hook: &SimHook,
    event_header: &str,
    body: &str,
    event_uuid: &str,
    idempotency_key: &str,
    origin: &str,
) -> Delivered {
    let failed =
        || Delivered { hook_id: hook.id, status: None, idempotency_key: idempotency_key.into(), body: String::new() };
    let Ok(client) = reqwest::Client::builder().no_proxy().timeout(DELIVERY_TIMEOUT).build() else {
        return failed();
    };
    let mut req = client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("user-agent", format!("GitLab/{}", shared.version))
        .header("x-gitlab-event", event_header)
        .header("x-gitlab-instance", origin)
        .header("x-gitlab-webhook-uuid", uuid(seed()))
        .header("x-gitlab-event-uuid", event_uuid)
        .header("idempotency-key", idempotency_key)
        .body(body.to_owned());
    if let Some(token) = &hook.token {
        req = req.header("x-gitlab-token", token);
    }
    if let Some(signing) = &hook.signing_token {
        let ts = OffsetDateTime::now_utc().unix_timestamp().to_string();
        if let Some(sig) = sign(signing, idempotency_key, &ts, body.as_bytes()) {
            req = req
                .header("webhook-id", idempotency_key)
                .header("webhook-timestamp", ts)
                .header("webhook-signature", sig);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Delivered {
                hook_id: hook.id,
                status: Some(status),
                idempotency_key: idempotency_key.into(),
                body: text.chars().take(8192).collect(),
            }
        }
        Err(_) => {
            Delivered { hook_id: hook.id, status: None, idempotency_key: idempotency_key.into(), body: String::new() }
        }
    }
}

fn hook_json(hook: &SimHook, now: OffsetDateTime, signing_supported: bool) -> Value {
    let mut v = json!({
        "id": hook.id,
        "url": hook.url,
        "name": null,
        "description": null,
        "project_id": hook.project_id,
        "push_events_branch_filter": null,
        "branch_filter_strategy": "wildcard",
        "enable_ssl_verification": hook.enable_ssl_verification,
        "alert_status": hook.alert_status(now),
        "disabled_until": hook.disabled_until.filter(|u| *u > now).and_then(|u| u.format(&Rfc3339).ok()),
        "url_variables": [],
        "custom_headers": [],
        "custom_webhook_template": null,
        "created_at": hook.created_at.format(&Rfc3339).unwrap_or_default(),
        "issues_events": false,
        "confidential_issues_events": false,
        "job_events": false,
        "pipeline_events": false,
        "wiki_page_events": false,
        "deployment_events": false,
        "releases_events": false,
        "milestone_events": false,
        "feature_flag_events": false,
        "repository_update_events": false,
        "emoji_events": false,
        "token_present": hook.token.is_some(),
    });
    for flag in EVENT_FLAGS {
        v[flag] = json!(hook.events.contains(&flag));
    }
    if signing_supported {
        v["signing_token_present"] = json!(hook.signing_token.is_some());
    }
    v
}

fn not_found(what: &str) -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({ "message": format!("404 {what} Not Found") }))
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(s.as_str(), "true" | "1")),
        Value::Number(n) => Some(n.as_u64() == Some(1)),
        _ => None,
    }
}

/// Applies POST/PUT attributes; `Err` names the first invalid one.
fn apply(hook: &mut SimHook, body: &Value, signing_supported: bool, creating: bool) -> Result<(), String> {
    if let Some(url) = body.get("url").and_then(Value::as_str) {
        let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() <= 2048;
        if !ok {
            return Err("url is blocked: Only allowed schemes are http, https".into());
        }
        if !creating && url != hook.url && body.get("token").is_none() {
            // Changing a hook's URL resets its secret token (doc/api/project_webhooks.md).
            hook.token = None;
        }
        hook.url = url.to_owned();
    } else if creating {
        return Err("url is missing".into());
    }
    if let Some(token) = body.get("token").and_then(Value::as_str) {
        hook.token = (!token.is_empty()).then(|| token.to_owned());
    }
    if signing_supported && let Some(token) = body.get("signing_token").and_then(Value::as_str) {
        let valid = token.strip_prefix("whsec_").and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        if valid.is_none_or(|k| k.len() != 32) {
            return Err("signing_token is invalid".into());
        }
        hook.signing_token = Some(token.to_owned());
    }
    if let Some(v) = body.get("enable_ssl_verification").and_then(truthy) {
        hook.enable_ssl_verification = v;
    }
    for flag in EVENT_FLAGS {
        match body.get(flag).and_then(truthy) {
            Some(true) if !hook.events.contains(&flag) => hook.events.push(flag),
            Some(false) => hook.events.retain(|f| *f != flag),
            _ => {}
        }
    }
    Ok(())
}

/// `/projects/:id/hooks[/:hook_id[/test/:trigger]]` for a project the caller can see.
pub(crate) async fn route(shared: &Shared, ctx: &ReqCtx, project: &SimProject, rest: &str) -> Response {
    // Reads need read access to the project; changes need `api` (and Maintainer, which every
    // `api` token of the simulator has).
    let write = ctx.method != Method::GET && ctx.method != Method::HEAD;
    let scopes = if write { Scopes::Only(&API_ONLY) } else { Scopes::Only(&API_WIDE) };
    match authenticate_optional(shared, ctx, scopes) {
        Ok(Some(_)) => {}
        Ok(None) => return crate::api::unauthorized(),
        Err(denied) => return denied.into_response(),
    }
    let signing_supported = version_major(&shared.version) >= 19;
    let now = OffsetDateTime::now_utc();
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&ctx.body) {
            Ok(v) => v,
            Err(_) => return bad_request("body is not JSON"),
        }
    };
    match (parts.as_slice(), &ctx.method) {
        ([], &Method::GET) => {
            let list: Vec<Value> = shared
                .hooks()
                .items
                .iter()
                .filter(|h| h.project_id == project.id)
                .map(|h| hook_json(h, now, signing_supported))
                .collect();
            ok_json(&list)
        }
        ([], &Method::POST) => {
            let mut hooks = shared.hooks();
            hooks.next_id += 1;
            let mut hook = SimHook {
                id: hooks.next_id,
                project_id: project.id,
                url: String::new(),
                token: None,
                signing_token: None,
                // GitLab's model default: push events on unless said otherwise.
                events: vec!["push_events"],
                enable_ssl_verification: true,
                recent_failures: 0,
                disabled_until: None,
                permanently_disabled: false,
                created_at: now,
            };
            if let Err(e) = apply(&mut hook, &body, signing_supported, true) {
                return bad_request(&e);
            }
            let out = hook_json(&hook, now, signing_supported);
            hooks.items.push(hook);
            json_response(StatusCode::CREATED, &out)
        }
        ([], _) => method_not_allowed("OPTIONS, GET, HEAD, POST"),
        ([id], method) => {
            let Ok(id) = id.parse::<u64>() else { return not_found("Hook") };
            let mut hooks = shared.hooks();
            let Some(index) = hooks.items.iter().position(|h| h.id == id && h.project_id == project.id) else {
                return not_found("Hook");
            };
            match *method {
                Method::GET | Method::HEAD => ok_json(&hook_json(&hooks.items[index], now, signing_supported)),
                Method::PUT => {
                    let hook = &mut hooks.items[index];
                    if let Err(e) = apply(hook, &body, signing_supported, false) {
                        return bad_request(&e);
                    }
                    ok_json(&hook_json(hook, now, signing_supported))
                }
                Method::DELETE => {
                    hooks.items.remove(index);
                    crate::server::with_body(StatusCode::NO_CONTENT, "application/json", axum::body::Body::empty())
                }
                _ => method_not_allowed("OPTIONS, GET, HEAD, PUT, DELETE"),
            }
        }
        ([id, "test", trigger], &Method::POST) => {
            let Some(hook) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| shared.hooks().items.iter().find(|h| h.id == id && h.project_id == project.id).cloned())
            else {
                return not_found("Hook");
            };
            let event = match *trigger {
                "push_events" => SimEvent::Push { branch: None, before: default_before(), after: default_sha() },
                "tag_push_events" => SimEvent::TagPush { tag: "v1.0.0".into() },
                "merge_requests_events" => SimEvent::MergeRequest {
                    iid: 1,
                    action: "open".into(),
                    head_sha: default_sha(),
                    oldrev: None,
                    source_branch: default_source(),
                    target_branch: None,
                },
                "note_events" => SimEvent::Note { author_id: 1, iid: 1 },
                _ => return bad_request("trigger does not have a valid value"),
            };
            let (_, header) = event.flag_and_header();
            let body = event.payload(project, &ctx.origin).to_string();
            let delivered = send(shared, &hook, header, &body, &uuid(seed()), &uuid(seed()), &ctx.origin).await;
            let ok = delivered.status.is_some_and(|s| (200..300).contains(&s));
            if let Some(h) = shared.hooks().items.iter_mut().find(|h| h.id == hook.id)
                && ok
            {
                // A successful test delivery re-enables a disabled hook.
                h.record(true, OffsetDateTime::now_utc());
            }
            if ok {
                json_response(StatusCode::CREATED, &json!({ "message": "201 Created" }))
            } else {
                let status = delivered.status.map_or("no response".to_owned(), |s| s.to_string());
                json_response(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "message": format!("Error: {status}") }))
            }
        }
        _ => not_found("Hook"),
    }
}

/// `POST /-/sim/projects/:id/events` (not GitLab's: the simulator's control): raises an event on
/// a project and answers what each hook's receiver said.
pub(crate) async fn raise(shared: &Shared, ctx: &ReqCtx, rest: &str) -> Response {
    let Some(id) = rest.strip_suffix("/events").and_then(|id| id.parse::<u64>().ok()) else {
        return not_found("Project");
    };
    if ctx.method != Method::POST {
        return method_not_allowed("POST");
    }
    let Ok(mut event) = serde_json::from_slice::<SimEvent>(&ctx.body) else {
        return bad_request("expected an event such as {\"kind\":\"merge_request\",\"iid\":1,\"action\":\"open\"}");
    };
    let Some(project) = shared.projects().get(id).cloned() else {
        return not_found("Project");
    };
    // Without a commit named, a project with a repository reports the commit its ref points at.
    if let Some(repo) = &project.repo {
        match &mut event {
            SimEvent::MergeRequest { iid, head_sha, .. } if *head_sha == default_sha() => {
                if let Some(sha) = crate::projects::ref_sha(repo, &format!("refs/merge-requests/{iid}/head")) {
                    *head_sha = sha;
                }
            }
            SimEvent::Push { branch, after, .. } if *after == default_sha() => {
                let name = branch.clone().or_else(|| project.default_branch.clone()).unwrap_or_default();
                if let Some(sha) = crate::projects::ref_sha(repo, &format!("refs/heads/{name}")) {
                    *after = sha;
                }
            }
            _ => {}
        }
    }
    let delivered = deliver(shared, id, &event, &ctx.origin).await;
    let out: Vec<Value> =
        delivered.iter().map(|d| json!({ "hook_id": d.hook_id, "status": d.status, "response": d.body })).collect();
    ok_json(&json!({ "deliveries": out }))
}

//! The api function: an integration's repositories (list, search, filter, track) and its sync
//! (trigger, status), always scoped by the team from the authorizer claims.

use std::collections::HashSet;
use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::adapters::dynamodb::DynamoIntegrationStore;
use shared::adapters::dynamodb_projects::DynamoProjectStore;
use shared::adapters::sqs::SqsJobQueue;
use shared::adapters::{DynamoClient, SqsClient};
use shared::config::{ConfigError, ProcessEnv, VarSource, optional, required};
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::project::Project;
use shared::domain::sync::SyncRun;
use shared::http::{ApiError, json_body, json_response, team_id};
use shared::messages::{HooksReason, HooksRequested, MESSAGE_VERSION, Message, SyncReason, SyncRequested};
use shared::ports::{IntegrationStore, JobQueue, ProjectQuery, ProjectStore, SyncStateStore};

/// Most project ids in one track/untrack request.
const MAX_IDS: usize = 1000;

/// Settings read once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Sync queue (`SYNC_QUEUE_URL`).
    pub sync_queue_url: String,
    /// JWT claim naming the team (`TEAM_CLAIM`, default `team_id`).
    pub team_claim: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    /// Reads any variable source.
    pub fn from_vars(src: &dyn VarSource) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required(src, "TABLE_NAME")?,
            sync_queue_url: required(src, "SYNC_QUEUE_URL")?,
            team_claim: optional(src, "TEAM_CLAIM").unwrap_or_else(|| "team_id".to_owned()),
        })
    }
}

/// Everything a request needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    /// Integrations (ownership checks).
    pub integrations: Arc<dyn IntegrationStore>,
    /// Projects.
    pub projects: Arc<dyn ProjectStore>,
    /// Sync runs.
    pub sync_state: Arc<dyn SyncStateStore>,
    /// Sync queue.
    pub queue: Arc<dyn JobQueue>,
    /// Team claim name.
    pub team_claim: String,
}

impl Deps {
    /// Builds the AWS clients; no network call happens here.
    pub async fn build(config: &Config) -> Self {
        let sdk = shared::adapters::aws_config().await;
        let dynamo = DynamoClient::new(&sdk);
        let projects = Arc::new(DynamoProjectStore::new(dynamo.clone(), &config.table_name));
        Self {
            integrations: Arc::new(DynamoIntegrationStore::new(dynamo, &config.table_name)),
            projects: projects.clone(),
            sync_state: projects,
            queue: Arc::new(SqsJobQueue::new(SqsClient::new(&sdk), &config.sync_queue_url)),
            team_claim: config.team_claim.clone(),
        }
    }
}

enum Resource {
    Repositories,
    Sync,
}

fn route(path: &str) -> Option<(Option<IntegrationId>, Resource)> {
    let rest = path.strip_prefix("/integrations/gitlab/")?;
    let mut parts = rest.split('/');
    let raw_id = parts.next()?;
    let resource = match (parts.next(), parts.next()) {
        (Some("repositories"), None) => Resource::Repositories,
        (Some("sync"), None) => Resource::Sync,
        _ => return None,
    };
    // A malformed id answers exactly like an unknown one.
    Some((IntegrationId::parse(raw_id), resource))
}

/// Lambda entry point: always answers with a response.
#[tracing::instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    Ok(match process(deps, &req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    })
}

async fn process(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let (id, resource) = route(req.uri().path()).ok_or_else(ApiError::not_found)?;
    let team = team_id(req, &deps.team_claim)?;
    let id = id.ok_or_else(ApiError::not_found)?;
    // Another team's integration answers exactly like a missing one.
    deps.integrations.get(&team, &id).await?.ok_or_else(ApiError::not_found)?;
    match (resource, req.method()) {
        (Resource::Repositories, &Method::GET) => list_repositories(deps, &team, &id, req).await,
        (Resource::Repositories, &Method::PATCH) => track(deps, &team, &id, json_body(req)?).await,
        (Resource::Sync, &Method::POST) => trigger_sync(deps, &team, &id).await,
        (Resource::Sync, &Method::GET) => {
            let status = deps.sync_state.sync_status(&team, &id).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "current": status.current.map(run_view), "last": status.last.map(run_view) }),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn repository_view(p: &Project) -> Value {
    let s = &p.snapshot;
    json!({
        "project_id": s.id,
        "path_with_namespace": s.path_with_namespace,
        "web_url": s.web_url,
        "default_branch": s.default_branch,
        "visibility": s.visibility,
        "archived": s.archived,
        "empty_repo": s.empty_repo,
        "last_activity_at": s.last_activity_at,
        "languages": p.languages,
        "tracked": p.tracked,
        // A project with a hook record has a managed hook (or a failed attempt, in `error`);
        // without one its hook was added by hand and only the last delivery is known.
        "webhook": p.tracked.then(|| {
            let hook = p.webhook.hook.as_ref();
            json!({
                "mode": if hook.is_some() { "managed" } else { "manual" },
                "hook_id": hook.and_then(|h| h.hook_id),
                "alert_status": hook.and_then(|h| h.alert_status.clone()),
                "disabled_until": hook.and_then(|h| h.disabled_until.clone()),
                "last_delivery_at": p.webhook.last_delivery_at,
                "last_checked_at": hook.map(|h| h.last_checked_at.clone()),
                "error": hook.and_then(|h| h.error.clone()),
            })
        }),
    })
}

fn run_view(run: SyncRun) -> Value {
    json!({
        "sync_id": run.sync_id,
        "state": run.state,
        "reason": run.reason,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "projects": { "seen": run.seen, "added": run.added, "updated": run.updated, "removed": run.removed, "unchanged": run.unchanged, "skipped": run.skipped },
        "requests": run.requests,
        "error": run.error.map(|code| json!({ "code": code, "message": run.error_message })),
    })
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

async fn list_repositories(
    deps: &Deps,
    team: &TeamId,
    id: &IntegrationId,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let after = match query_param(req, "cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid_request("cursor", "The cursor is not one this API returned."))?,
        ),
    };
    let limit = match query_param(req, "limit").filter(|l| !l.is_empty()) {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid_request("limit", "The limit must be a number from 1 to 100."))?,
    };
    let tracked = match query_param(req, "tracked").as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::invalid_request("tracked", "tracked must be true or false.")),
    };
    let search = match query_param(req, "search").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) if s.len() <= 255 && !s.chars().any(char::is_control) => Some(s),
        Some(_) => return Err(ApiError::invalid_request("search", "The search text must be at most 255 characters.")),
    };
    let page = deps.projects.list_projects(team, id, &ProjectQuery { after, limit, tracked, search }).await?;
    let items: Vec<Value> = page.items.iter().map(repository_view).collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items, "next_cursor": page.next_after.map(|a| a.to_string()) })))
}

/// `PATCH .../repositories`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackRequest {
    /// Projects to track.
    #[serde(default)]
    pub track: Vec<u64>,
    /// Projects to stop tracking.
    #[serde(default)]
    pub untrack: Vec<u64>,
}

async fn track(deps: &Deps, team: &TeamId, id: &IntegrationId, body: TrackRequest) -> Result<Response<Body>, ApiError> {
    if body.track.len() + body.untrack.len() > MAX_IDS {
        return Err(ApiError::invalid_request("track", "At most 1000 project ids per request."));
    }
    let track: HashSet<u64> = body.track.iter().copied().collect();
    let untrack: HashSet<u64> = body.untrack.iter().copied().collect();
    if !track.is_disjoint(&untrack) {
        return Err(ApiError::invalid_request("untrack", "A project cannot be tracked and untracked at once."));
    }
    let (track, untrack): (Vec<u64>, Vec<u64>) = (track.into_iter().collect(), untrack.into_iter().collect());
    // Every id is checked before anything changes: a bad one changes nothing.
    let unknown = deps.projects.set_tracking(team, id, &track, &untrack).await?;
    if !unknown.is_empty() {
        return Err(ApiError::invalid_request("track", "Some project ids do not belong to this integration.")
            .with_details(json!({ "field": "track", "unknown_project_ids": unknown })));
    }
    if !track.is_empty() || !untrack.is_empty() {
        // Managed hooks follow the tracking (the sync holds the token that can change them); a
        // lost message is made good by the hourly hook check.
        let message = Message::HooksRequested(HooksRequested {
            version: MESSAGE_VERSION,
            team_id: team.clone(),
            integration_id: id.clone(),
            reason: HooksReason::Tracking,
            requested_at: time::OffsetDateTime::now_utc(),
        });
        if let Err(e) = deps.queue.send(&message).await {
            tracing::warn!(error.message = %e, "could not queue the hook update; the hourly check will do it");
        }
    }
    Ok(json_response(StatusCode::OK, &json!({ "tracked": track.len(), "untracked": untrack.len() })))
}

async fn trigger_sync(deps: &Deps, team: &TeamId, id: &IntegrationId) -> Result<Response<Body>, ApiError> {
    // A run in progress covers this request: answer with its id instead of queueing another.
    if let Some(current) = deps.sync_state.sync_status(team, id).await?.current {
        return Ok(json_response(StatusCode::ACCEPTED, &json!({ "sync_id": current.sync_id, "coalesced": true })));
    }
    let sync_id = hex::encode(rand::random::<[u8; 8]>());
    deps.queue
        .send(&Message::SyncRequested(SyncRequested {
            version: MESSAGE_VERSION,
            team_id: team.clone(),
            integration_id: id.clone(),
            reason: SyncReason::Manual,
            requested_at: time::OffsetDateTime::now_utc(),
            sync_id: Some(sync_id.clone()),
        }))
        .await?;
    Ok(json_response(StatusCode::ACCEPTED, &json!({ "sync_id": sync_id, "coalesced": false })))
}

//! The api function: an integration's repositories (list, search, filter, track), its sync
//! (trigger, status) and its scans (start, list, read with findings, triage), always scoped by
//! the team from the authorizer claims.

pub mod scans;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::adapters::dynamodb::DynamoIntegrationStore;
use shared::adapters::dynamodb_projects::DynamoProjectStore;
use shared::adapters::dynamodb_scans::DynamoScanStore;
use shared::adapters::sqs::SqsJobQueue;
use shared::adapters::{DynamoClient, SqsClient};
use shared::config::{ConfigError, ProcessEnv, VarSource, optional, parsed_or, required};
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::project::Project;
use shared::domain::sync::{QueuedSync, RunState, SyncRun};
use shared::http::{ApiError, json_body, json_response, team_id};
use shared::messages::{HooksReason, HooksRequested, MESSAGE_VERSION, Message, SyncReason, SyncRequested};
use shared::ports::{
    IntegrationStore, JobQueue, ProjectQuery, ProjectStore, ScanStore, SyncStateStore, TrackingResult,
};
use time::OffsetDateTime;

/// Most project ids in one track/untrack request.
const MAX_IDS: usize = 1000;

/// Settings read once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Sync queue (`SYNC_QUEUE_URL`).
    pub sync_queue_url: String,
    /// Scan queue (`SCAN_QUEUE_URL`).
    pub scan_queue_url: String,
    /// JWT claim naming the team (`TEAM_CLAIM`, default `team_id`).
    pub team_claim: String,
    /// Shortest time between two manual sync requests of one integration
    /// (`SYNC_COOLDOWN_SECONDS`, default 60; 0 turns it off). A request while a run is queued
    /// or going is answered with that run instead.
    pub sync_cooldown: Duration,
    /// Most tracked projects per integration (`MAX_TRACKED_PROJECTS`, default 1000; 0: no
    /// limit).
    pub max_tracked_projects: u64,
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
            scan_queue_url: required(src, "SCAN_QUEUE_URL")?,
            team_claim: optional(src, "TEAM_CLAIM").unwrap_or_else(|| "team_id".to_owned()),
            sync_cooldown: Duration::from_secs(parsed_or(src, "SYNC_COOLDOWN_SECONDS", 60)?),
            max_tracked_projects: parsed_or(src, "MAX_TRACKED_PROJECTS", 1000)?,
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
    /// Scans and findings.
    pub scans: Arc<dyn ScanStore>,
    /// Scan queue.
    pub scan_queue: Arc<dyn JobQueue>,
    /// Team claim name.
    pub team_claim: String,
    /// Shortest time between manual sync requests.
    pub sync_cooldown: Duration,
    /// Most tracked projects per integration (0: no limit).
    pub max_tracked_projects: u64,
}

impl Deps {
    /// Builds the AWS clients; no network call happens here.
    pub async fn build(config: &Config) -> Self {
        let sdk = shared::adapters::aws_config().await;
        let dynamo = DynamoClient::new(&sdk);
        let projects = Arc::new(DynamoProjectStore::new(dynamo.clone(), &config.table_name));
        Self {
            integrations: Arc::new(DynamoIntegrationStore::new(dynamo.clone(), &config.table_name)),
            projects: projects.clone(),
            sync_state: projects,
            queue: Arc::new(SqsJobQueue::new(SqsClient::new(&sdk), &config.sync_queue_url)),
            scans: Arc::new(DynamoScanStore::new(dynamo, &config.table_name)),
            scan_queue: Arc::new(SqsJobQueue::new(SqsClient::new(&sdk), &config.scan_queue_url)),
            team_claim: config.team_claim.clone(),
            sync_cooldown: config.sync_cooldown,
            max_tracked_projects: config.max_tracked_projects,
        }
    }
}

enum Resource {
    Repositories,
    Sync,
    /// `repositories/{project_id}/scans`; `None`: not a project id (answers 404).
    ProjectScans(Option<u64>),
    Scans,
    Scan(String),
    Finding(String),
}

fn route(path: &str) -> Option<(Option<IntegrationId>, Resource)> {
    let rest = path.strip_prefix("/integrations/gitlab/")?;
    let mut parts = rest.split('/');
    let raw_id = parts.next()?;
    let resource = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("repositories"), None, None, None) => Resource::Repositories,
        (Some("sync"), None, None, None) => Resource::Sync,
        (Some("repositories"), Some(project), Some("scans"), None) => {
            Resource::ProjectScans(project.parse::<u64>().ok().filter(|p| *p > 0))
        }
        (Some("scans"), None, None, None) => Resource::Scans,
        (Some("scans"), Some(scan_id), None, None) => Resource::Scan(scan_id.to_owned()),
        (Some("findings"), Some(fingerprint), None, None) => Resource::Finding(fingerprint.to_owned()),
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
        (Resource::ProjectScans(project), &Method::POST) => {
            let project =
                project.ok_or_else(|| ApiError::not_found().with_details(json!({ "resource": "project" })))?;
            scans::start(deps, &team, &id, project, req).await
        }
        (Resource::Scans, &Method::GET) => scans::list(deps, &team, &id, req).await,
        (Resource::Scan(scan_id), &Method::GET) => scans::get(deps, &team, &id, &scan_id, req).await,
        (Resource::Finding(fp), &Method::PATCH) => scans::triage(deps, &team, &id, &fp, json_body(req)?).await,
        (Resource::Sync, &Method::GET) => {
            let view = deps.sync_state.sync_status(&team, &id).await?.view(OffsetDateTime::now_utc());
            Ok(json_response(
                StatusCode::OK,
                &json!({ "current": view.current.map(run_view), "last": view.last.map(run_view) }),
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
    let queued = run.state == Some(RunState::Queued);
    json!({
        "sync_id": run.sync_id,
        "state": run.state,
        "reason": run.reason,
        "requested_at": run.requested_at,
        "started_at": (!queued).then_some(run.started_at.as_str()),
        "finished_at": run.finished_at,
        "updated_at": run.updated_at,
        "projects": { "seen": run.seen, "added": run.added, "updated": run.updated, "removed": run.removed, "unchanged": run.unchanged, "skipped": run.skipped },
        "requests": run.requests,
        "progress": {
            "pages": run.pages,
            "rate_limited": run.rate_limited,
            "pages_per_second": run.pages_per_second(),
            "estimated_projects": run.estimated_projects,
        },
        "error": run.error.map(|code| json!({ "code": code, "message": run.error_message })),
    })
}

pub(crate) fn query_param(req: &Request, name: &str) -> Option<String> {
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
    let max = (deps.max_tracked_projects > 0).then_some(deps.max_tracked_projects);
    match deps.projects.set_tracking(team, id, &track, &untrack, max).await? {
        TrackingResult::Done => {}
        TrackingResult::Unknown(unknown) => {
            return Err(ApiError::invalid_request("track", "Some project ids do not belong to this integration.")
                .with_details(json!({ "field": "track", "unknown_project_ids": unknown })));
        }
        TrackingResult::OverLimit { would_track, max } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "quota_exceeded",
                format!("This change would track {would_track} projects; an integration may track at most {max}."),
            )
            .with_hint(
                "Untrack projects that no longer need scanning, or ask the operator to raise MAX_TRACKED_PROJECTS.",
            )
            .with_details(
                json!({ "limit": "tracked_projects_per_integration", "max": max, "would_track": would_track }),
            ));
        }
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
    let now = OffsetDateTime::now_utc();
    // A run queued or in progress covers this request: answer with its id instead of queueing
    // another. A run that died does not.
    if let Some(sync_id) = deps.sync_state.sync_status(team, id).await?.covering_run(now) {
        return Ok(json_response(StatusCode::ACCEPTED, &json!({ "sync_id": sync_id, "coalesced": true })));
    }
    let queued = QueuedSync::new("manual", now);
    // Recorded first (visible at once as `queued`, and the cooldown is one conditional write).
    if !deps.sync_state.queue_request(team, id, &queued, now, Some(deps.sync_cooldown)).await? {
        // A concurrent request won the race: its run covers this one.
        let status = deps.sync_state.sync_status(team, id).await?;
        if let Some(sync_id) = status.covering_run(now) {
            return Ok(json_response(StatusCode::ACCEPTED, &json!({ "sync_id": sync_id, "coalesced": true })));
        }
        let cooldown = deps.sync_cooldown.as_secs();
        let since = status.last_requested_at.map_or(0, |at| (now.unix_timestamp() - at).max(0).unsigned_abs());
        let wait = cooldown.saturating_sub(since).max(1);
        return Err(ApiError::rate_limited(Duration::from_secs(wait))
            .with_message(format!("A sync of this integration was requested less than {cooldown} seconds ago."))
            .with_hint("Wait for the cooldown, or read the sync status for the last run.")
            .with_details(
                json!({ "limit": "sync_cooldown", "cooldown_seconds": cooldown, "retry_after_seconds": wait }),
            ));
    }
    let sent = deps
        .queue
        .send(&Message::SyncRequested(SyncRequested {
            version: MESSAGE_VERSION,
            team_id: team.clone(),
            integration_id: id.clone(),
            reason: SyncReason::Manual,
            requested_at: now,
            sync_id: Some(queued.sync_id.clone()),
        }))
        .await;
    if let Err(e) = sent {
        // Nothing will run: do not show it as queued, and let the caller retry at once.
        if let Err(undo) = deps.sync_state.clear_queued(team, id, &queued).await {
            tracing::warn!(error.message = %undo, "could not clear a queued sync whose message was not sent");
        }
        return Err(e.into());
    }
    Ok(json_response(StatusCode::ACCEPTED, &json!({ "sync_id": queued.sync_id, "coalesced": false })))
}

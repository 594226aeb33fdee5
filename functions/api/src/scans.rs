//! Scan routes: start a scan of a tracked project, list scans, read one with a page of its
//! findings, and set a finding's triage.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::adapters::dynamodb_projects::rfc3339;
use shared::domain::findings::{ScanRecord, ScanState, Triage, is_fingerprint, is_scan_id, new_scan_id};
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::scan::{ScanTarget, ScanTrigger, valid_branch};
use shared::http::{ApiError, body_bytes, json_body, json_response};
use shared::messages::{MESSAGE_VERSION, Message, ScanRequested};
use time::OffsetDateTime;

use crate::{Deps, query_param};

/// `POST .../repositories/{project_id}/scans`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartScan {
    /// Branch to scan (default: the project's default branch).
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
}

/// `PATCH .../findings/{fingerprint}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTriage {
    /// `open`, `dismissed`, `confirmed` or `resolved`.
    pub triage: String,
}

fn limit(req: &Request, default: u32, max: u32) -> Result<u32, ApiError> {
    match query_param(req, "limit").filter(|l| !l.is_empty()) {
        None => Ok(default),
        Some(l) => {
            l.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                ApiError::invalid_request("limit", format!("The limit must be a number from 1 to {max}."))
            })
        }
    }
}

/// A project, scan or finding the caller's integration does not have (another team's answers
/// the same). `details.resource` says which kind was looked for; a path no route serves has none.
fn missing(resource: &str) -> ApiError {
    ApiError::not_found().with_details(json!({ "resource": resource }))
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_request("cursor", "The cursor is not one this API returned.")
}

/// A scan as the api shows it.
pub fn scan_view(scan: &ScanRecord) -> Value {
    let (git_ref, iid, target_branch) = match &scan.target {
        ScanTarget::MergeRequest { iid, target_branch } => {
            (format!("refs/merge-requests/{iid}/head"), Some(*iid), Some(target_branch.as_str()))
        }
        ScanTarget::Branch { branch } => (branch.clone(), None, None),
    };
    json!({
        "scan_id": scan.scan_id,
        "project_id": scan.project_id,
        "ref": git_ref,
        "sha": scan.sha,
        "trigger": scan.trigger,
        "merge_request_iid": iid,
        "target_branch": target_branch,
        "state": scan.state,
        "error": scan.error,
        "created_at": scan.created_at,
        "started_at": scan.started_at,
        "finished_at": scan.finished_at,
        "counts": scan.counts,
        "truncated": scan.truncated,
        "skipped": scan.skipped,
        "scanners": scan.scanners,
        "stats": scan.stats,
        "report": scan.report,
    })
}

/// `POST .../repositories/{project_id}/scans`.
pub async fn start(
    deps: &Deps,
    team: &TeamId,
    id: &IntegrationId,
    project_id: u64,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body: StartScan = if body_bytes(req)?.is_empty() { StartScan::default() } else { json_body(req)? };
    let project = deps
        .scans
        .project(team, id, project_id)
        .await?
        .filter(|p| p.removed_at.is_none())
        .ok_or_else(|| missing("project"))?;
    if !project.tracked {
        return Err(ApiError::new(StatusCode::CONFLICT, "project_not_tracked", "Only tracked projects are scanned.")
            .with_hint("Track the project (PATCH .../repositories) and try again."));
    }
    let branch = match body.git_ref {
        Some(r) if valid_branch(&r) => r,
        Some(_) => return Err(ApiError::invalid_request("ref", "ref must be a branch name.")),
        None => project.snapshot.default_branch.clone().filter(|b| valid_branch(b)).ok_or_else(|| {
            ApiError::new(StatusCode::CONFLICT, "empty_repository", "The project has no default branch to scan.")
                .with_hint("Push a commit, or name a branch in `ref`.")
        })?,
    };
    let now = OffsetDateTime::now_utc();
    let scan_id = new_scan_id(now, rand::random());
    let target = ScanTarget::Branch { branch };
    let record = ScanRecord::queued(&scan_id, project_id, target.clone(), ScanTrigger::Manual, now);
    // Recorded first, so the id handed out can be read at once.
    deps.scans.save_scan(team, id, &record).await?;
    let message = Message::ScanRequested(ScanRequested {
        version: MESSAGE_VERSION,
        team_id: team.clone(),
        integration_id: id.clone(),
        project_id,
        target,
        head_sha: None,
        scan_id: Some(scan_id.clone()),
        trigger: ScanTrigger::Manual,
        delivery_id: None,
        requested_at: now,
    });
    if let Err(e) = deps.scan_queue.send(&message).await {
        let mut failed = record;
        failed.state = ScanState::Failed;
        failed.finished_at = Some(rfc3339(OffsetDateTime::now_utc()));
        failed.error = Some(shared::domain::findings::ScanError {
            code: "queue_unavailable".into(),
            message: "The scan could not be queued.".into(),
        });
        if let Err(undo) = deps.scans.save_scan(team, id, &failed).await {
            tracing::warn!(error.message = %undo, "could not mark an unqueued scan failed");
        }
        return Err(e.into());
    }
    Ok(json_response(StatusCode::ACCEPTED, &json!({ "scan_id": scan_id, "state": "queued" })))
}

/// `GET .../scans?project_id=&cursor=&limit=`.
pub async fn list(deps: &Deps, team: &TeamId, id: &IntegrationId, req: &Request) -> Result<Response<Body>, ApiError> {
    let project_id = match query_param(req, "project_id").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            p.parse::<u64>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::invalid_request("project_id", "project_id must be a GitLab project id."))?,
        ),
    };
    let cursor = query_param(req, "cursor").filter(|c| !c.is_empty());
    if cursor.as_deref().is_some_and(|c| !is_scan_id(c)) {
        return Err(bad_cursor());
    }
    let limit = limit(req, 20, 100)?;
    let page = deps.scans.list_scans(team, id, project_id, cursor.as_deref(), limit).await?;
    let items: Vec<Value> = page.items.iter().map(scan_view).collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items, "next_cursor": page.next })))
}

/// `GET .../scans/{scan_id}?cursor=&limit=`.
pub async fn get(
    deps: &Deps,
    team: &TeamId,
    id: &IntegrationId,
    scan_id: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    if !is_scan_id(scan_id) {
        return Err(missing("scan"));
    }
    let scan = deps.scans.scan(team, id, scan_id).await?.ok_or_else(|| missing("scan"))?;
    let cursor = query_param(req, "cursor").filter(|c| !c.is_empty());
    let limit = limit(req, 100, 500)?;
    let page = deps.scans.findings(team, id, scan_id, cursor.as_deref(), limit).await.map_err(|e| match e {
        shared::ports::PortError::NotFound => bad_cursor(),
        other => other.into(),
    })?;
    let mut view = scan_view(&scan);
    view["findings"] = serde_json::to_value(&page.items).map_err(ApiError::internal)?;
    view["next_cursor"] = json!(page.next);
    Ok(json_response(StatusCode::OK, &view))
}

/// `PATCH .../findings/{fingerprint}`.
pub async fn triage(
    deps: &Deps,
    team: &TeamId,
    id: &IntegrationId,
    fingerprint: &str,
    body: SetTriage,
) -> Result<Response<Body>, ApiError> {
    let triage = Triage::parse(&body.triage)
        .ok_or_else(|| ApiError::invalid_request("triage", "triage must be open, dismissed, confirmed or resolved."))?;
    if !is_fingerprint(fingerprint) {
        return Err(missing("finding"));
    }
    let finding = deps
        .scans
        .set_triage(team, id, fingerprint, triage, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(|| missing("finding"))?;
    Ok(json_response(StatusCode::OK, &finding))
}

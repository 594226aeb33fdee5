//! External commit statuses (doc/api/commits.md, "Set the pipeline status of a commit" and
//! "List the statuses of a commit"; lib/api/commit_statuses.rb,
//! app/services/ci/create_commit_status_service.rb).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config::SimUser;
use crate::merge_requests::{Call, created, forbidden, not_found, user_basic};
use crate::params::{self, grape_error};
use crate::repo_ops;
use crate::server::RunningSim;

const STATES: [&str; 6] = ["pending", "running", "success", "failed", "canceled", "skipped"];

#[derive(Clone, Debug)]
pub(crate) struct StatusRecord {
    id: u64,
    project_id: u64,
    sha: String,
    ref_name: String,
    name: String,
    status: String,
    description: Option<String>,
    target_url: Option<String>,
    coverage: Option<f64>,
    author: SimUser,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
    /// A later status of the same name replaced it (`retried`), so listings without `all` skip it.
    retried: bool,
}

#[derive(Default)]
pub(crate) struct StatusStore {
    items: Vec<StatusRecord>,
    next_id: u64,
    /// Every accepted write, oldest first, with its project.
    history: Vec<(u64, SimStatus)>,
}

/// The state machine event a state is reached by (`apply_job_state!`).
fn event(state: &str) -> &'static str {
    match state {
        "pending" => "enqueue",
        "running" => "run",
        "success" => "success",
        "failed" => "drop",
        "canceled" => "cancel",
        _ => "skip",
    }
}

fn status_json(call: &Call<'_>, s: &StatusRecord) -> Value {
    let t = |t: Option<OffsetDateTime>| t.map_or(Value::Null, |t| Value::String(crate::api::timestamp(t)));
    json!({
        "id": s.id,
        "sha": s.sha,
        "ref": s.ref_name,
        "status": s.status,
        "name": s.name,
        "target_url": s.target_url,
        "description": s.description,
        "created_at": crate::api::timestamp(s.created_at),
        "started_at": t(s.started_at),
        "finished_at": t(s.finished_at),
        "allow_failure": false,
        "coverage": s.coverage,
        "pipeline_id": 1000 + s.project_id,
        "author": user_basic(call.ctx, &s.author),
    })
}

/// `POST /projects/:id/statuses/:sha`.
pub(crate) fn create(call: &Call<'_>, sha: &str) -> Response {
    let p = &call.params;
    let Some(state) = params::text(p, "state") else { return grape_error("state is missing") };
    if !STATES.contains(&state.as_str()) {
        return grape_error("state does not have a valid value");
    }
    let coverage = match p.get("coverage") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => match s.parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => return grape_error("coverage is invalid"),
        },
        Some(_) => return grape_error("coverage is invalid"),
    };
    // `authorize! :create_commit_status`: Developer or higher.
    if !call.can_write_code() {
        return forbidden(None);
    }
    let sha = crate::server::percent_decode(sha);
    let Some(repo) = call.project.repo.as_ref() else { return not_found("Commit") };
    let Some(commit) = repo_ops::commit_sha(repo, &sha) else { return not_found("Commit") };
    let ref_name = match params::text(p, "ref").filter(|r| !r.is_empty()) {
        Some(r) => r,
        None => match repo_ops::branches_containing(repo, &commit)
            .into_iter()
            .next()
            .or_else(|| source_branch_of(call, &commit))
        {
            Some(branch) => branch,
            None => return not_found("References for commit"),
        },
    };
    let name = params::text(p, "name").or_else(|| params::text(p, "context")).unwrap_or_else(|| "default".into());
    let description = params::text(p, "description");
    let target_url = params::text(p, "target_url");
    // The model's length validations, answered with `errors.messages`.
    let mut too_long = serde_json::Map::new();
    for (key, value) in
        [("ref", Some(&ref_name)), ("target_url", target_url.as_ref()), ("description", description.as_ref())]
    {
        if value.is_some_and(|v| v.chars().count() > 255) {
            too_long.insert(key.to_string(), json!(["is too long (maximum is 255 characters)"]));
        }
    }
    if !too_long.is_empty() {
        return crate::api::json(StatusCode::BAD_REQUEST, &json!({ "message": too_long }));
    }
    let now = OffsetDateTime::now_utc();
    let mut store = call.shared.statuses();
    // An unfinished status of the same name, ref and user is moved on; otherwise a new one
    // replaces the older ones of that name.
    let existing = store.items.iter().position(|s| {
        s.project_id == call.project.id
            && s.sha == commit
            && s.ref_name == ref_name
            && s.name == name
            && s.author.id == call.user.id
            && !s.retried
            && matches!(s.status.as_str(), "pending" | "running")
    });
    let index = match existing {
        Some(i) => {
            let current = store.items[i].status.clone();
            // `pending` cannot be entered again, nor `running` from `running`.
            if current == state && matches!(state.as_str(), "pending" | "running") {
                let ev = event(&state);
                return bad_request_raw(&format!(
                    "Cannot transition status via :{ev} from :{current} (Reason(s): Status cannot transition via \"{ev}\")"
                ));
            }
            i
        }
        None => {
            for s in store.items.iter_mut().filter(|s| {
                s.project_id == call.project.id && s.sha == commit && s.ref_name == ref_name && s.name == name
            }) {
                s.retried = true;
            }
            store.next_id += 1;
            let id = store.next_id;
            store.items.push(StatusRecord {
                id,
                project_id: call.project.id,
                sha: commit,
                ref_name,
                name,
                status: String::new(),
                description: None,
                target_url: None,
                coverage: None,
                author: call.user.clone(),
                created_at: now,
                started_at: None,
                finished_at: None,
                retried: false,
            });
            store.items.len() - 1
        }
    };
    let record = &mut store.items[index];
    if description.is_some() {
        record.description = description;
    }
    if target_url.is_some() {
        record.target_url = target_url;
    }
    if coverage.is_some() {
        record.coverage = coverage;
    }
    if state == "running" && record.started_at.is_none() {
        record.started_at = Some(now);
    }
    if matches!(state.as_str(), "success" | "failed" | "canceled" | "skipped") {
        record.finished_at = Some(now);
    }
    record.status = state;
    let out = record.clone();
    store.history.push((
        out.project_id,
        SimStatus {
            id: out.id,
            sha: out.sha.clone(),
            ref_name: out.ref_name.clone(),
            name: out.name.clone(),
            state: out.status.clone(),
            description: out.description.clone().unwrap_or_default(),
            target_url: out.target_url.clone(),
            author_id: out.author.id,
            at: now,
        },
    ));
    drop(store);
    created(&status_json(call, &out))
}

/// The source branch of a merge request whose head contains `commit`: in GitLab that branch
/// contains it too, while a test repository may only have the `refs/merge-requests/<iid>/head`.
fn source_branch_of(call: &Call<'_>, commit: &str) -> Option<String> {
    let repo = call.project.repo.as_ref()?;
    let out =
        repo_ops::output(repo, &["for-each-ref", "--format=%(refname)", "--contains", commit, "refs/merge-requests/"])?;
    String::from_utf8_lossy(&out).lines().find_map(|name| {
        let iid = name.strip_prefix("refs/merge-requests/")?.strip_suffix("/head")?.parse::<u64>().ok()?;
        crate::merge_requests::find_mr(call.shared, &call.project, iid).map(|mr| mr.source_branch)
    })
}

/// `render_api_error!(message, 400)`.
fn bad_request_raw(message: &str) -> Response {
    crate::api::json(StatusCode::BAD_REQUEST, &json!({ "message": message }))
}

/// `GET /projects/:id/repository/commits/:sha/statuses`: the latest status per name unless
/// `all`, filtered by `ref`, `name`; ordered by id (`sort`, default `asc`), paginated.
pub(crate) fn list(call: &Call<'_>, sha: &str) -> Response {
    let p = &call.params;
    let all = match params::boolean(p, "all") {
        Ok(v) => v.unwrap_or(false),
        Err(()) => return grape_error("all is invalid"),
    };
    let sort = params::text(p, "sort").unwrap_or_else(|| "asc".into());
    if !matches!(sort.as_str(), "asc" | "desc") {
        return grape_error("sort does not have a valid value");
    }
    let order_by = params::text(p, "order_by").unwrap_or_else(|| "id".into());
    if !matches!(order_by.as_str(), "id" | "pipeline_id") {
        return grape_error("order_by does not have a valid value");
    }
    let page = match params::page(p) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let sha = crate::server::percent_decode(sha);
    let Some(commit) = call.project.repo.as_ref().and_then(|repo| repo_ops::commit_sha(repo, &sha)) else {
        return not_found("Commit");
    };
    let ref_filter = params::text(p, "ref").filter(|r| !r.is_empty());
    let name_filter = params::text(p, "name").filter(|r| !r.is_empty());
    let mut items: Vec<StatusRecord> = call
        .shared
        .statuses()
        .items
        .iter()
        .filter(|s| s.project_id == call.project.id && s.sha == commit)
        .filter(|s| all || !s.retried)
        .filter(|s| ref_filter.as_ref().is_none_or(|r| *r == s.ref_name))
        .filter(|s| name_filter.as_ref().is_none_or(|n| *n == s.name))
        .cloned()
        .collect();
    if sort == "desc" {
        items.reverse();
    }
    let json: Vec<Value> = items.iter().map(|s| status_json(call, s)).collect();
    params::paginated(call.ctx, page, &json)
}

/// One accepted `POST /projects/:id/statuses/:sha`: the status it created or moved on, as it
/// was right after the write.
#[derive(Clone, Debug, PartialEq)]
pub struct SimStatus {
    /// The status's id: writes that moved an unfinished status on share it.
    pub id: u64,
    pub sha: String,
    pub ref_name: String,
    pub name: String,
    /// `pending`, `running`, `success`, `failed`, `canceled` or `skipped`.
    pub state: String,
    /// Empty when none was ever given.
    pub description: String,
    pub target_url: Option<String>,
    pub author_id: u64,
    pub at: OffsetDateTime,
}

impl RunningSim {
    /// Every accepted status write on a commit of a project (`sha` in full), newest first, so
    /// a status moved from `pending` to `failed` shows both.
    pub fn statuses(&self, project_id: u64, sha: &str) -> Vec<SimStatus> {
        self.shared()
            .statuses()
            .history
            .iter()
            .rev()
            .filter(|(project, s)| *project == project_id && s.sha == sha)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

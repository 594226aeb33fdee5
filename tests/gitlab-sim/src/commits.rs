//! What a fix merge request needs: `POST /projects/:id/repository/commits` (doc/api/commits.md,
//! "Create a commit with multiple files and actions"; lib/api/commits.rb,
//! app/services/commits/create_service.rb), built in the bare repository with git plumbing, and
//! `GET`/`POST /projects/:id/merge_requests`, `PUT /projects/:id/merge_requests/:iid`
//! (doc/api/merge_requests.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::{json as json_response, ok_json};
use crate::merge_requests::{
    Call, MrRecord, all_mrs, bad_request, created, diff_refs, find_mr, forbidden, mr_json, mr_not_found,
};
use crate::params::{self, grape_error};
use crate::repo_ops;
use crate::repos::git;

/// `Gitaly`'s answers to impossible file actions (`UserCommitFiles`).
const FILE_EXISTS: &str = "A file with this name already exists";
const FILE_MISSING: &str = "A file with this name doesn't exist";
const DIRECTORY_EXISTS: &str = "A directory with this name already exists";

/// `render_api_error!(message, 400)`: the message alone.
fn refused(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "message": message }))
}

// ---------------------------------------------------------------------------------------------
// Git plumbing

/// Runs git on `repo` with `input` on stdin and extra environment; stdout on success.
fn git_with(repo: &Path, args: &[&str], input: &[u8], env: &[(&str, String)]) -> Option<Vec<u8>> {
    let mut command = git(Some(repo));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).ok()?;
    }
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// A tree entry: mode and object id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    mode: String,
    sha: String,
}

/// Every blob, link and submodule of `commit`'s tree by full path.
fn read_tree(repo: &Path, commit: &str) -> Option<BTreeMap<String, Entry>> {
    let out = repo_ops::output(repo, &["ls-tree", "-r", "-z", "--full-tree", commit])?;
    let mut entries = BTreeMap::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let record = String::from_utf8_lossy(record);
        let Some((meta, path)) = record.split_once('\t') else { continue };
        let mut parts = meta.split(' ');
        let (Some(mode), Some(_), Some(sha)) = (parts.next(), parts.next(), parts.next()) else { continue };
        entries.insert(path.to_string(), Entry { mode: mode.to_string(), sha: sha.to_string() });
    }
    Some(entries)
}

/// Writes the tree of `entries` (through a temporary index) and returns its id.
fn write_tree(repo: &Path, entries: &BTreeMap<String, Entry>) -> Option<String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let index = repo.join(format!("gitlab-sim-index-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let env = [("GIT_INDEX_FILE", index.to_string_lossy().into_owned())];
    let mut info = Vec::new();
    for (path, entry) in entries {
        info.extend_from_slice(format!("{} {}\t{path}", entry.mode, entry.sha).as_bytes());
        info.push(0);
    }
    let tree = git_with(repo, &["update-index", "--add", "-z", "--index-info"], &info, &env)
        .and_then(|_| git_with(repo, &["write-tree"], &[], &env))
        .map(|o| text(&o));
    let _ = std::fs::remove_file(&index);
    tree
}

fn hash_blob(repo: &Path, content: &[u8]) -> Option<String> {
    git_with(repo, &["hash-object", "-w", "--stdin"], content, &[]).map(|o| text(&o))
}

fn last_commit_for(repo: &Path, start: &str, path: &str) -> Option<String> {
    repo_ops::output(repo, &["log", "-1", "--format=%H", start, "--", path]).map(|o| text(&o))
}

fn valid_branch_name(repo: &Path, branch: &str) -> bool {
    repo_ops::is_safe_rev(branch)
        && repo_ops::output(repo, &["check-ref-format", &format!("refs/heads/{branch}")]).is_some()
}

// ---------------------------------------------------------------------------------------------
// POST /projects/:id/repository/commits

/// One validated action of the request.
struct Action {
    kind: String,
    file_path: String,
    previous_path: Option<String>,
    content: Option<Vec<u8>>,
    last_commit_id: Option<String>,
    execute_filemode: Option<bool>,
}

/// `validate_commits_attrs!` in lib/api/commits.rb; `Err` is the `bad_request!` reason.
fn parse_actions(p: &Value) -> Result<Vec<Action>, String> {
    let Some(list) = p.get("actions").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Err("actions is required".into());
    };
    let mut actions = Vec::new();
    for (index, raw) in list.iter().enumerate() {
        let field = |key: &str| params::text(raw, key).filter(|v| !v.is_empty());
        let kind = field("action").ok_or_else(|| format!("actions[{index}][action] is required"))?;
        let file_path = field("file_path").ok_or_else(|| format!("actions[{index}][file_path] is required"))?;
        if !matches!(kind.as_str(), "create" | "update" | "move" | "delete" | "chmod") {
            return Err(format!("actions[{index}][action] must be one of: create, update, move, delete, chmod"));
        }
        let encoding = params::text(raw, "encoding").unwrap_or_else(|| "text".into());
        if !matches!(encoding.as_str(), "text" | "base64") {
            return Err(format!("actions[{index}][encoding] must be text or base64"));
        }
        let content = match params::text(raw, "content") {
            None => None,
            Some(c) if encoding == "base64" => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(c.replace(['\n', '\r'], ""))
                    .map_err(|_| format!("actions[{index}][content] is not valid base64"))?,
            ),
            Some(c) => Some(c.into_bytes()),
        };
        let previous_path = field("previous_path");
        let mut execute_filemode = None;
        match kind.as_str() {
            "update" if content.is_none() => {
                return Err(format!("actions[{index}][content] is required for update action"));
            }
            "move" if previous_path.is_none() => {
                return Err(format!("actions[{index}][previous_path] is required for move action"));
            }
            "chmod" => match raw.get("execute_filemode") {
                None => return Err(format!("actions[{index}][execute_filemode] is required for chmod action")),
                Some(Value::Bool(b)) => execute_filemode = Some(*b),
                Some(Value::String(s)) if s == "true" || s == "false" => execute_filemode = Some(s == "true"),
                Some(_) => return Err(format!("actions[{index}][execute_filemode] must be a boolean")),
            },
            _ => {}
        }
        actions.push(Action {
            kind,
            file_path,
            previous_path,
            content,
            last_commit_id: field("last_commit_id"),
            execute_filemode,
        });
    }
    Ok(actions)
}

/// Gitaly's path rules: relative, no `.`/`..` components (UNCONFIRMED texts, see FIXTURES.md).
fn clean_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err("You must provide a file path".into());
    }
    if trimmed.split('/').any(|c| c == ".." || c == "." || c.is_empty()) || path.contains('\0') {
        return Err("Path cannot include directory traversal".into());
    }
    Ok(trimmed.to_string())
}

/// Applies the actions to `entries`; `Err` is the message GitLab answers with 400.
fn apply(
    repo: &Path,
    start: Option<&str>,
    entries: &mut BTreeMap<String, Entry>,
    actions: &[Action],
) -> Result<(), String> {
    let is_dir = |entries: &BTreeMap<String, Entry>, path: &str| {
        let prefix = format!("{path}/");
        entries.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    };
    let parent_is_file = |entries: &BTreeMap<String, Entry>, path: &str| {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            if entries.contains_key(&path[..at + i]) {
                return true;
            }
            at += i + 1;
        }
        false
    };
    for action in actions {
        let path = clean_path(&action.file_path)?;
        if let (Some(expected), Some(start)) = (&action.last_commit_id, start)
            && action.kind != "create"
        {
            let checked = if action.kind == "move" { action.previous_path.as_deref().unwrap_or(&path) } else { &path };
            if last_commit_for(repo, start, checked).as_deref() != Some(expected.as_str()) {
                return Err(format!("The file has changed since you started editing it: {checked}"));
            }
        }
        let blob = |content: &[u8]| hash_blob(repo, content).ok_or_else(|| "Failed to write the file".to_string());
        match action.kind.as_str() {
            "create" => {
                if entries.contains_key(&path) || parent_is_file(entries, &path) {
                    return Err(FILE_EXISTS.into());
                }
                if is_dir(entries, &path) {
                    return Err(DIRECTORY_EXISTS.into());
                }
                let sha = blob(action.content.as_deref().unwrap_or_default())?;
                entries.insert(path, Entry { mode: "100644".into(), sha });
            }
            "update" => {
                let Some(entry) = entries.get_mut(&path) else { return Err(FILE_MISSING.into()) };
                entry.sha = blob(action.content.as_deref().unwrap_or_default())?;
            }
            "delete" => {
                if entries.remove(&path).is_none() {
                    return Err(FILE_MISSING.into());
                }
            }
            "chmod" => {
                let Some(entry) = entries.get_mut(&path) else { return Err(FILE_MISSING.into()) };
                if matches!(entry.mode.as_str(), "100644" | "100755") {
                    entry.mode = if action.execute_filemode == Some(true) { "100755" } else { "100644" }.into();
                }
            }
            _ => {
                let previous = clean_path(action.previous_path.as_deref().unwrap_or_default())?;
                let Some(mut entry) = entries.remove(&previous) else { return Err(FILE_MISSING.into()) };
                if entries.contains_key(&path) || parent_is_file(entries, &path) {
                    return Err(FILE_EXISTS.into());
                }
                if is_dir(entries, &path) {
                    return Err(DIRECTORY_EXISTS.into());
                }
                if let Some(content) = &action.content {
                    entry.sha = blob(content)?;
                }
                entries.insert(path, entry);
            }
        }
    }
    Ok(())
}

pub(crate) fn create_commit(call: &Call<'_>) -> Response {
    let p = &call.params;
    let branch = params::text(p, "branch").filter(|b| !b.is_empty());
    // `authorize_push_to_branch!`: Developer+, and the protected default branch is refused.
    let protected = branch.as_deref().is_some_and(|b| call.project.default_branch.as_deref() == Some(b));
    if !call.can_write_code() || protected {
        return forbidden(Some("You are not allowed to push into this branch"));
    }
    let Some(branch) = branch else { return bad_request("branch is required") };
    let Some(message) = params::text(p, "commit_message").filter(|m| !m.trim().is_empty()) else {
        return bad_request("commit_message is required");
    };
    let actions = match parse_actions(p) {
        Ok(actions) => actions,
        Err(reason) => return bad_request(&reason),
    };
    if p.get("start_sha").is_some() && p.get("start_branch").is_some() {
        return bad_request("start_branch, start_sha are mutually exclusive");
    }
    let force = matches!(params::boolean(p, "force"), Ok(Some(true)));
    let start_sha = params::text(p, "start_sha");
    let start_branch = if start_sha.is_some() {
        None
    } else {
        Some(params::text(p, "start_branch").filter(|b| !b.is_empty()).unwrap_or_else(|| branch.clone()))
    };
    let Some(repo) = call.project.repo.as_ref() else { return not_found_repository() };
    let empty = repo_ops::refs_under(repo, "refs/heads/").is_empty();

    // Commits::CreateService#validate!
    let start = match (&start_sha, &start_branch) {
        (Some(sha), _) => {
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return refused(&format!("Invalid start_sha '{sha}'"));
            }
            match repo_ops::commit_sha(repo, sha) {
                Some(commit) => Some(commit),
                None => return refused(&format!("Cannot find start_sha '{sha}'")),
            }
        }
        (None, Some(start_branch)) => {
            let tip = repo_ops::ref_commit(repo, &format!("refs/heads/{start_branch}"));
            if tip.is_none() && !empty {
                return refused("You can only create or edit files when you are on a branch");
            }
            tip
        }
        (None, None) => None,
    };
    let different = start_branch.as_deref() != Some(branch.as_str()) || start_sha.is_some();
    let current = repo_ops::ref_commit(repo, &format!("refs/heads/{branch}"));
    if !empty && different && current.is_some() && !force {
        return refused(&format!(
            "A branch called '{branch}' already exists. Switch to that branch in order to make changes"
        ));
    }
    if different && !valid_branch_name(repo, &branch) {
        return refused(&format!(
            "Something went wrong when we tried to create '{branch}' for you: Branch name is invalid"
        ));
    }
    if start.is_none() && actions.iter().any(|a| a.kind != "create") {
        let kind = actions.iter().find(|a| a.kind != "create").map_or("update", |a| a.kind.as_str());
        return refused(&format!("No files to {kind}."));
    }

    let mut entries = match &start {
        Some(commit) => match read_tree(repo, commit) {
            Some(entries) => entries,
            None => return refused("Failed to read the start commit"),
        },
        None => BTreeMap::new(),
    };
    if let Err(message) = apply(repo, start.as_deref(), &mut entries, &actions) {
        return refused(&message);
    }
    let Some(tree) = write_tree(repo, &entries) else { return refused("Failed to write the tree") };

    let now = OffsetDateTime::now_utc();
    let date = format!("{} +0000", now.unix_timestamp());
    let user = &call.user;
    let email = format!("{}@example.com", user.username);
    let author_name = params::text(p, "author_name").filter(|s| !s.is_empty()).unwrap_or_else(|| user.name.clone());
    let author_email = params::text(p, "author_email").filter(|s| !s.is_empty()).unwrap_or_else(|| email.clone());
    let env = [
        ("GIT_AUTHOR_NAME", author_name.clone()),
        ("GIT_AUTHOR_EMAIL", author_email.clone()),
        ("GIT_AUTHOR_DATE", date.clone()),
        ("GIT_COMMITTER_NAME", user.name.clone()),
        ("GIT_COMMITTER_EMAIL", email),
        ("GIT_COMMITTER_DATE", date),
    ];
    let mut args = vec!["commit-tree", tree.as_str()];
    if let Some(parent) = &start {
        args.extend(["-p", parent.as_str()]);
    }
    args.extend(["-F", "-"]);
    let Some(commit) = git_with(repo, &args, message.as_bytes(), &env).map(|o| text(&o)) else {
        return refused("Failed to create the commit");
    };
    let old = current.unwrap_or_else(|| "0".repeat(40));
    let reference = format!("refs/heads/{branch}");
    if repo_ops::output(repo, &["update-ref", &reference, &commit, &old]).is_none() {
        return refused("Could not update the branch: it was changed at the same time");
    }
    created(&commit_json(call, &commit, start.as_deref(), &message, (&author_name, &author_email), now))
}

fn not_found_repository() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"message": "404 Repository Not Found"}))
}

/// `Entities::CommitDetail` with `stats`.
fn commit_json(
    call: &Call<'_>,
    sha: &str,
    parent: Option<&str>,
    message: &str,
    author: (&str, &str),
    at: OffsetDateTime,
) -> Value {
    let (mut additions, mut deletions) = (0u64, 0u64);
    if let Some(repo) = &call.project.repo {
        // The empty tree's id, for a root commit.
        let from = parent.unwrap_or("4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        if let Some(out) = repo_ops::output(repo, &["diff", "--numstat", from, sha]) {
            for line in String::from_utf8_lossy(&out).lines() {
                let mut parts = line.split('\t');
                additions += parts.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                deletions += parts.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    let when = crate::api::timestamp(at);
    let title = message.lines().next().unwrap_or_default();
    json!({
        "id": sha,
        "short_id": &sha[..8.min(sha.len())],
        "created_at": when,
        "parent_ids": parent.map(|p| vec![p.to_string()]).unwrap_or_default(),
        "title": title,
        "message": message,
        "author_name": author.0,
        "author_email": author.1,
        "authored_date": when,
        "committer_name": call.user.name,
        "committer_email": format!("{}@example.com", call.user.username),
        "committed_date": when,
        "trailers": {},
        "extended_trailers": {},
        "web_url": format!("{}{}/{}/-/commit/{sha}", call.ctx.origin, call.ctx.base_path, call.project.path_with_namespace),
        "stats": { "additions": additions, "deletions": deletions, "total": additions + deletions },
        "status": null,
        "project_id": call.project.id,
        "last_pipeline": null,
    })
}

// ---------------------------------------------------------------------------------------------
// Merge requests: list, create, update

/// The fields `Entities::MergeRequestBasic` (used by listings) does not have.
const DETAIL_ONLY: [&str; 11] = [
    "subscribed",
    "changes_count",
    "latest_build_started_at",
    "latest_build_finished_at",
    "first_deployed_to_production_at",
    "pipeline",
    "head_pipeline",
    "diff_refs",
    "merge_error",
    "first_contribution",
    "user",
];

/// `GET /projects/:id/merge_requests` with `state` (default `all`), `source_branch`,
/// `target_branch`, `iids[]`, `order_by` (`created_at`, `updated_at`), `sort` (default `desc`).
pub(crate) fn list_mrs(call: &Call<'_>) -> Response {
    let p = &call.params;
    let state = params::text(p, "state").unwrap_or_else(|| "all".into());
    if !matches!(state.as_str(), "opened" | "closed" | "locked" | "merged" | "all") {
        return grape_error("state does not have a valid value");
    }
    let order_by = params::text(p, "order_by").unwrap_or_else(|| "created_at".into());
    if !matches!(order_by.as_str(), "created_at" | "updated_at" | "title") {
        return grape_error("order_by does not have a valid value");
    }
    let sort = params::text(p, "sort").unwrap_or_else(|| "desc".into());
    if !matches!(sort.as_str(), "asc" | "desc") {
        return grape_error("sort does not have a valid value");
    }
    let page = match params::page(p) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let source = params::text(p, "source_branch");
    let target = params::text(p, "target_branch");
    let iids: Option<Vec<u64>> = p.get("iids").map(|v| match v {
        Value::Array(items) => items.iter().filter_map(|i| params::text(&json!({"i": i}), "i")?.parse().ok()).collect(),
        other => params::text(&json!({"i": other}), "i").and_then(|i| i.parse().ok()).into_iter().collect(),
    });
    let mut mrs: Vec<MrRecord> = all_mrs(call.shared, &call.project)
        .into_iter()
        .filter(|mr| state == "all" || mr.state == state)
        .filter(|mr| source.as_ref().is_none_or(|s| *s == mr.source_branch))
        .filter(|mr| target.as_ref().is_none_or(|t| *t == mr.target(&call.project)))
        .filter(|mr| iids.as_ref().is_none_or(|ids| ids.contains(&mr.iid)))
        .collect();
    mrs.sort_by(|a, b| {
        let by = match order_by.as_str() {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "title" => a.title.cmp(&b.title),
            _ => a.created_at.cmp(&b.created_at),
        };
        let ordered = by.then(a.id.cmp(&b.id));
        if sort == "asc" { ordered } else { ordered.reverse() }
    });
    let items: Vec<Value> = mrs
        .iter()
        .map(|mr| {
            let mut v = mr_json(call, mr, None);
            if let Value::Object(map) = &mut v {
                for key in DETAIL_ONLY {
                    map.remove(key);
                }
            }
            v
        })
        .collect();
    params::paginated(call.ctx, page, &items)
}

/// `validate_branches` of the MergeRequest model: 409 for an open MR with the same branches.
fn conflict(call: &Call<'_>, source: &str, target: &str, except: Option<u64>) -> Option<Response> {
    let other = all_mrs(call.shared, &call.project).into_iter().find(|mr| {
        mr.state == "opened"
            && mr.source_branch == source
            && mr.target(&call.project) == target
            && Some(mr.iid) != except
    })?;
    Some(json_response(
        StatusCode::CONFLICT,
        &json!({"message": [format!("Another open merge request already exists for this source branch: !{}", other.iid)]}),
    ))
}

/// `POST /projects/:id/merge_requests`.
pub(crate) fn create_mr(call: &Call<'_>) -> Response {
    let p = &call.params;
    let missing: Vec<String> = ["title", "source_branch", "target_branch"]
        .iter()
        .filter(|k| params::text(p, k).is_none())
        .map(|k| format!("{k} is missing"))
        .collect();
    if !missing.is_empty() {
        return grape_error(&missing.join(", "));
    }
    let field = |k: &str| params::text(p, k).unwrap_or_default();
    let (title, source, target) = (field("title"), field("source_branch"), field("target_branch"));
    let remove_source = match params::boolean(p, "remove_source_branch") {
        Ok(v) => v.unwrap_or(false),
        Err(()) => return grape_error("remove_source_branch is invalid"),
    };
    // `authorize! :create_merge_request_from`: Developer or higher.
    if !call.can_write_code() {
        return forbidden(None);
    }
    if source == target {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"message": ["You can't use same project/branch for source and target"]}),
        );
    }
    let Some(repo) = call.project.repo.as_ref() else { return not_found_repository() };
    let mut invalid = serde_json::Map::new();
    if title.trim().is_empty() {
        invalid.insert("title".into(), json!(["can't be blank"]));
    }
    let head = repo_ops::ref_commit(repo, &format!("refs/heads/{source}"));
    if head.is_none() {
        invalid.insert("source_branch".into(), json!(["does not exist"]));
    }
    if repo_ops::ref_commit(repo, &format!("refs/heads/{target}")).is_none() {
        invalid.insert("target_branch".into(), json!(["does not exist"]));
    }
    if !invalid.is_empty() {
        return json_response(StatusCode::BAD_REQUEST, &json!({ "message": invalid }));
    }
    if let Some(response) = conflict(call, &source, &target, None) {
        return response;
    }
    // The next iid after every MR known, ref-only ones included, taken under the store's lock.
    let after = all_mrs(call.shared, &call.project).iter().map(|mr| mr.iid).max().unwrap_or(0);
    let Some(iid) = call.shared.register_new_mr(&call.project, after + 1, |mr| {
        mr.title = title;
        mr.description = field("description");
        mr.source_branch = source;
        mr.target_branch = Some(target);
        mr.author = call.user.clone();
        mr.force_remove_source_branch = remove_source;
    }) else {
        return mr_not_found();
    };
    if let Some(head) = &head {
        let _ = repo_ops::output(repo, &["update-ref", &format!("refs/merge-requests/{iid}/head"), head]);
    }
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    let refs = diff_refs(call.shared, &call.project, &mr);
    created(&mr_json(call, &mr, refs.as_ref()))
}

/// `PUT /projects/:id/merge_requests/:iid` with `title`, `description`, `target_branch`,
/// `remove_source_branch` and `state_event` (`close`, `reopen`).
pub(crate) fn update_mr(call: &Call<'_>, iid: u64) -> Response {
    let p = &call.params;
    let state_event = params::text(p, "state_event");
    if state_event.as_deref().is_some_and(|e| !matches!(e, "close" | "reopen")) {
        return grape_error("state_event does not have a valid value");
    }
    let Ok(remove_source) = params::boolean(p, "remove_source_branch") else {
        return grape_error("remove_source_branch is invalid");
    };
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    // `authorize! :update_merge_request`: Developer or higher, or the author.
    if !call.can_write_code() && mr.author.id != call.user.id {
        return forbidden(None);
    }
    let target = params::text(p, "target_branch").unwrap_or_else(|| mr.target(&call.project));
    if state_event.as_deref() == Some("reopen")
        && mr.state == "closed"
        && let Some(response) = conflict(call, &mr.source_branch, &target, Some(iid))
    {
        return response;
    }
    let now = OffsetDateTime::now_utc();
    call.shared.register_mr(&call.project, iid, |record| {
        if let Some(title) = params::text(p, "title") {
            record.title = title;
        }
        if let Some(description) = params::text(p, "description") {
            record.description = description;
        }
        if let Some(target) = params::text(p, "target_branch") {
            record.target_branch = Some(target);
        }
        if let Some(remove) = remove_source {
            record.force_remove_source_branch = remove;
        }
        match (state_event.as_deref(), record.state.as_str()) {
            (Some("close"), "opened") => {
                record.state = "closed".into();
                record.closed_at = Some(now);
            }
            (Some("reopen"), "closed") => {
                record.state = "opened".into();
                record.closed_at = None;
            }
            _ => {}
        }
        record.updated_at = now;
    });
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    let refs = diff_refs(call.shared, &call.project, &mr);
    ok_json(&mr_json(call, &mr, refs.as_ref()))
}

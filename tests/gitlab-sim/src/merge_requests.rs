//! Merge requests and their comments: the MR entity with `diff_refs` read from the project's
//! repository, the diffs, notes (doc/api/notes.md), threads with diff positions checked against
//! the diff as GitLab checks them (doc/api/discussions.md), and, in `commits.rs` and
//! `statuses.rs`, what else a scan worker writes. Which GitLab file each rule comes from is
//! listed in FIXTURES.md.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::{
    API_ONLY, API_WIDE, Scopes, authenticate_optional, json as json_response, method_not_allowed, ok_json,
};
use crate::config::{SimProject, SimUser};
use crate::params::{self, Page, grape_error};
use crate::repo_ops::{self, FileDiff};
use crate::server::{ReqCtx, RunningSim, Shared, fnv1a, splitmix64, with_body};

/// `Gitlab::Database::MAX_TEXT_SIZE_LIMIT`, the longest note body.
const MAX_NOTE_LENGTH: usize = 1_000_000;

/// The line-code error GitLab answers for a position that is not on the diff.
const LINE_CODE_ERRORS: &str = r#":line_code=>["can't be blank", "must be a valid line code"]"#;

// ---------------------------------------------------------------------------------------------
// State

/// The three commits of one version of a merge request's diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DiffRefs {
    pub(crate) base_sha: String,
    pub(crate) start_sha: String,
    pub(crate) head_sha: String,
}

#[derive(Clone, Debug)]
struct Version {
    id: u64,
    refs: DiffRefs,
    created_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub(crate) struct MrRecord {
    pub(crate) id: u64,
    pub(crate) project_id: u64,
    pub(crate) iid: u64,
    pub(crate) title: String,
    pub(crate) description: String,
    /// `opened`, `closed` or `merged`.
    pub(crate) state: String,
    pub(crate) source_branch: String,
    /// `None`: the project's default branch.
    pub(crate) target_branch: Option<String>,
    pub(crate) author: SimUser,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
    pub(crate) merged_at: Option<OffsetDateTime>,
    pub(crate) closed_at: Option<OffsetDateTime>,
    pub(crate) force_remove_source_branch: bool,
    /// Every distinct `diff_refs` the simulator has shown, oldest first.
    versions: Vec<Version>,
}

impl MrRecord {
    pub(crate) fn target(&self, project: &SimProject) -> String {
        self.target_branch.clone().or_else(|| project.default_branch.clone()).unwrap_or_else(|| "main".into())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoteKind {
    /// `type: null`: a comment on the MR itself, an individual-note discussion.
    Plain,
    DiscussionNote,
    DiffNote,
}

impl NoteKind {
    fn type_name(self) -> Option<&'static str> {
        match self {
            NoteKind::Plain => None,
            NoteKind::DiscussionNote => Some("DiscussionNote"),
            NoteKind::DiffNote => Some("DiffNote"),
        }
    }
}

/// A diff note's position (`Gitlab::Diff::Position#to_h`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    position_type: String,
    base_sha: String,
    start_sha: String,
    head_sha: String,
    old_path: Option<String>,
    new_path: Option<String>,
    old_line: Option<u64>,
    new_line: Option<u64>,
    /// `line_range` as sent, for multi-line notes.
    line_range: Option<Value>,
}

impl Position {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "base_sha": self.base_sha,
            "start_sha": self.start_sha,
            "head_sha": self.head_sha,
            "old_path": self.old_path,
            "new_path": self.new_path,
            "position_type": self.position_type,
        });
        if self.position_type == "text" {
            v["old_line"] = json!(self.old_line);
            v["new_line"] = json!(self.new_line);
            v["line_range"] = self.line_range.clone().unwrap_or(Value::Null);
        }
        v
    }
}

#[derive(Clone, Debug)]
struct NoteRecord {
    id: u64,
    project_id: u64,
    iid: u64,
    discussion_id: String,
    kind: NoteKind,
    body: String,
    author: SimUser,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    position: Option<Position>,
    commit_id: Option<String>,
    internal: bool,
    resolved_by: Option<SimUser>,
    resolved_at: Option<OffsetDateTime>,
}

impl NoteRecord {
    /// `ResolvableNote#resolvable?`: DiffNotes and DiscussionNotes on merge requests.
    fn resolvable(&self) -> bool {
        self.kind != NoteKind::Plain
    }
}

/// Merge requests and comments of every project.
#[derive(Default)]
pub(crate) struct MrStore {
    pub(crate) mrs: BTreeMap<(u64, u64), MrRecord>,
    next_mr_id: u64,
    next_version_id: u64,
    notes: Vec<NoteRecord>,
    next_note_id: u64,
    discussions_made: u64,
}

impl MrStore {
    fn new_mr_id(&mut self) -> u64 {
        self.next_mr_id += 1;
        1000 + self.next_mr_id
    }

    fn new_discussion_id(&mut self, project_id: u64, iid: u64) -> String {
        self.discussions_made += 1;
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        let seed = fnv1a(format!("{project_id}/{iid}/{}/{nanos}", self.discussions_made).as_bytes());
        let (a, b, c) = (splitmix64(seed), splitmix64(seed ^ 0x5bd1_e995), splitmix64(seed.wrapping_add(1)));
        format!("{a:016x}{b:016x}{:08x}", c as u32)
    }

    fn add_note(&mut self, mut note: NoteRecord) -> NoteRecord {
        self.next_note_id += 1;
        note.id = self.next_note_id;
        self.notes.push(note.clone());
        note
    }

    /// The MR's notes grouped into discussions, each in creation order, the discussions ordered
    /// by their first note (`discussion_ids_relation`: `MIN(created_at), MIN(id)`).
    fn discussions(&self, project_id: u64, iid: u64) -> Vec<Vec<NoteRecord>> {
        let mut groups: Vec<(String, Vec<NoteRecord>)> = Vec::new();
        let mut notes: Vec<&NoteRecord> =
            self.notes.iter().filter(|n| n.project_id == project_id && n.iid == iid).collect();
        notes.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        for note in notes {
            match groups.iter_mut().find(|(id, _)| *id == note.discussion_id) {
                Some((_, group)) => group.push(note.clone()),
                None => groups.push((note.discussion_id.clone(), vec![note.clone()])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }
}

/// The author the simulator gives merge requests it did not see created through the API.
fn default_author() -> SimUser {
    SimUser { id: 1, username: "root".into(), name: "Administrator".into(), bot: false, is_admin: true }
}

fn new_record(store: &mut MrStore, project_id: u64, iid: u64) -> MrRecord {
    let now = OffsetDateTime::now_utc();
    MrRecord {
        id: store.new_mr_id(),
        project_id,
        iid,
        title: format!("Merge request !{iid}"),
        description: String::new(),
        state: "opened".into(),
        source_branch: "feature".into(),
        target_branch: None,
        author: default_author(),
        created_at: now,
        updated_at: now,
        merged_at: None,
        closed_at: None,
        force_remove_source_branch: false,
        versions: Vec::new(),
    }
}

impl Shared {
    /// Records merge request `iid` of `project` (with defaults when it is new) and applies
    /// `change` to it. `false` when the project is gone.
    pub(crate) fn register_mr(&self, project: &SimProject, iid: u64, change: impl FnOnce(&mut MrRecord)) -> bool {
        if self.projects().get(project.id).is_none() {
            return false;
        }
        let mut store = self.mrs();
        let mut record =
            store.mrs.remove(&(project.id, iid)).unwrap_or_else(|| new_record(&mut store, project.id, iid));
        change(&mut record);
        store.mrs.insert((project.id, iid), record);
        true
    }

    /// Records a new merge request with the first free iid from `at_least` on and returns it.
    pub(crate) fn register_new_mr(
        &self,
        project: &SimProject,
        at_least: u64,
        change: impl FnOnce(&mut MrRecord),
    ) -> Option<u64> {
        self.projects().get(project.id)?;
        let mut store = self.mrs();
        let taken = store.mrs.range((project.id, 0)..=(project.id, u64::MAX)).map(|(k, _)| k.1).max().unwrap_or(0);
        let iid = at_least.max(taken + 1);
        let mut record = new_record(&mut store, project.id, iid);
        change(&mut record);
        store.mrs.insert((project.id, iid), record);
        Some(iid)
    }
}

/// The merge request `iid` of `project`: registered, created through the API, or implied by a
/// `refs/merge-requests/<iid>/head` ref in the repository (then recorded with defaults).
pub(crate) fn find_mr(shared: &Shared, project: &SimProject, iid: u64) -> Option<MrRecord> {
    if let Some(mr) = shared.mrs().mrs.get(&(project.id, iid)) {
        return Some(mr.clone());
    }
    let repo = project.repo.as_ref()?;
    repo_ops::ref_commit(repo, &format!("refs/merge-requests/{iid}/head"))?;
    let mut store = shared.mrs();
    if let Some(mr) = store.mrs.get(&(project.id, iid)) {
        return Some(mr.clone());
    }
    let record = new_record(&mut store, project.id, iid);
    store.mrs.insert((project.id, iid), record.clone());
    Some(record)
}

/// Every merge request of the project, refs in the repository included, by iid.
pub(crate) fn all_mrs(shared: &Shared, project: &SimProject) -> Vec<MrRecord> {
    if let Some(repo) = &project.repo {
        for (name, _) in repo_ops::refs_under(repo, "refs/merge-requests/") {
            let iid = name
                .strip_prefix("refs/merge-requests/")
                .and_then(|r| r.strip_suffix("/head"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(iid) = iid {
                let mut store = shared.mrs();
                if !store.mrs.contains_key(&(project.id, iid)) {
                    let record = new_record(&mut store, project.id, iid);
                    store.mrs.insert((project.id, iid), record);
                }
            }
        }
    }
    shared.mrs().mrs.range((project.id, 0)..=(project.id, u64::MAX)).map(|(_, mr)| mr.clone()).collect()
}

/// The MR's head: its `refs/merge-requests/<iid>/head`, else the source branch's tip.
pub(crate) fn head_sha(project: &SimProject, mr: &MrRecord) -> Option<String> {
    let repo = project.repo.as_ref()?;
    repo_ops::ref_commit(repo, &format!("refs/merge-requests/{}/head", mr.iid))
        .or_else(|| repo_ops::ref_commit(repo, &format!("refs/heads/{}", mr.source_branch)))
}

/// `MergeRequest#diff_refs` read from the repository now (`repository_diff_refs`): head, the
/// target branch's tip as start, and their merge base. The first time a set is seen it becomes
/// a new version of the MR.
pub(crate) fn diff_refs(shared: &Shared, project: &SimProject, mr: &MrRecord) -> Option<DiffRefs> {
    let repo = project.repo.as_ref()?;
    let head_sha = head_sha(project, mr)?;
    let start_sha = repo_ops::ref_commit(repo, &format!("refs/heads/{}", mr.target(project)))?;
    let base_sha = repo_ops::merge_base(repo, &start_sha, &head_sha)?;
    let refs = DiffRefs { base_sha, start_sha, head_sha };
    let mut store = shared.mrs();
    let version_id = store.next_version_id + 1;
    if let Some(record) = store.mrs.get_mut(&(project.id, mr.iid))
        && record.versions.last().is_none_or(|v| v.refs != refs)
    {
        record.versions.push(Version { id: version_id, refs: refs.clone(), created_at: OffsetDateTime::now_utc() });
        store.next_version_id = version_id;
    }
    Some(refs)
}

// ---------------------------------------------------------------------------------------------
// Routing

/// Whether `rest` is a route of this module or of `statuses.rs` / `commits.rs`.
pub(crate) fn is_route(rest: &str) -> bool {
    let Some((_, sub)) = rest.strip_prefix("/api/v4/projects/").and_then(|t| t.split_once('/')) else {
        return false;
    };
    sub == "merge_requests"
        || sub.starts_with("merge_requests/")
        || sub.starts_with("statuses/")
        || sub == "repository/commits"
        || (sub.starts_with("repository/commits/") && sub.ends_with("/statuses"))
}

#[derive(Clone, Copy)]
enum Route<'a> {
    MrList,
    Mr(u64),
    Diffs(u64),
    Versions(u64),
    Notes(u64),
    Note(u64, u64),
    Discussions(u64),
    Discussion(u64, &'a str),
    DiscussionNotes(u64, &'a str),
    DiscussionNote(u64, &'a str, u64),
    Status(&'a str),
    CommitStatuses(&'a str),
    Commits,
}

impl Route<'_> {
    fn allow(self) -> &'static str {
        match self {
            Route::MrList | Route::Notes(_) | Route::Discussions(_) | Route::DiscussionNotes(..) => {
                "OPTIONS, GET, HEAD, POST"
            }
            Route::Mr(_) | Route::Discussion(..) => "OPTIONS, GET, HEAD, PUT",
            Route::Note(..) | Route::DiscussionNote(..) => "OPTIONS, GET, HEAD, PUT, DELETE",
            Route::Diffs(_) | Route::Versions(_) | Route::CommitStatuses(_) => "OPTIONS, GET, HEAD",
            Route::Status(_) | Route::Commits => "OPTIONS, POST",
        }
    }

    fn accepts(self, method: &Method) -> bool {
        let allow = self.allow();
        let name = if *method == Method::HEAD { "HEAD" } else { method.as_str() };
        allow.split(", ").any(|m| m == name)
    }
}

/// Parses the part after `/projects/:id/`; `Err` is Grape's 400 for a non-numeric id.
fn parse_route(sub: &str) -> Option<Result<Route<'_>, Box<Response>>> {
    let parts: Vec<&str> = sub.split('/').collect();
    let number =
        |s: &str, name: &str| s.parse::<u64>().map_err(|_| Box::new(grape_error(&format!("{name} is invalid"))));
    let route = match parts.as_slice() {
        ["merge_requests"] => Ok(Route::MrList),
        ["merge_requests", iid, rest @ ..] => {
            let (iid_name, noteable) = ("merge_request_iid", "noteable_id");
            let parsed = |name: &str| number(iid, name);
            match rest {
                [] => parsed(iid_name).map(Route::Mr),
                ["diffs"] => parsed(iid_name).map(Route::Diffs),
                ["versions"] => parsed(iid_name).map(Route::Versions),
                ["notes"] => parsed(noteable).map(Route::Notes),
                ["notes", note] => parsed(noteable).and_then(|i| number(note, "note_id").map(|n| Route::Note(i, n))),
                ["discussions"] => parsed(noteable).map(Route::Discussions),
                ["discussions", d] if !d.is_empty() => parsed(noteable).map(|i| Route::Discussion(i, d)),
                ["discussions", d, "notes"] if !d.is_empty() => parsed(noteable).map(|i| Route::DiscussionNotes(i, d)),
                ["discussions", d, "notes", note] if !d.is_empty() => {
                    parsed(noteable).and_then(|i| number(note, "note_id").map(|n| Route::DiscussionNote(i, d, n)))
                }
                _ => return None,
            }
        }
        ["statuses", sha] if !sha.is_empty() => Ok(Route::Status(sha)),
        ["repository", "commits"] => Ok(Route::Commits),
        ["repository", "commits", sha, "statuses"] if !sha.is_empty() => Ok(Route::CommitStatuses(sha)),
        _ => return None,
    };
    Some(route)
}

/// What a handler knows: the caller, the project, the parameters.
pub(crate) struct Call<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) ctx: &'a ReqCtx,
    pub(crate) user: SimUser,
    pub(crate) project: SimProject,
    pub(crate) params: Value,
}

impl Call<'_> {
    /// Developer or higher: a member (every member is a Maintainer here) or an administrator.
    pub(crate) fn can_write_code(&self) -> bool {
        self.user.is_admin || self.project.members.as_ref().is_none_or(|ids| ids.contains(&self.user.id))
    }
}

/// `/projects/:id/merge_requests/...`, `/projects/:id/statuses/:sha`,
/// `/projects/:id/repository/commits/:sha/statuses` and `POST /projects/:id/repository/commits`.
/// Order as in GitLab: route and method, authentication and scopes, the project, parameters.
pub(crate) fn route(shared: &Shared, ctx: &ReqCtx) -> Response {
    let Some((id_part, sub)) = ctx.rest.strip_prefix("/api/v4/projects/").and_then(|t| t.split_once('/')) else {
        return route_not_found();
    };
    let route = match parse_route(sub) {
        None => return route_not_found(),
        Some(Err(response)) => return *response,
        Some(Ok(route)) => route,
    };
    if !route.accepts(&ctx.method) {
        return method_not_allowed(route.allow());
    }
    let write = ctx.method != Method::GET && ctx.method != Method::HEAD;
    let scopes = if write { Scopes::Only(&API_ONLY) } else { Scopes::Only(&API_WIDE) };
    let user = match authenticate_optional(shared, ctx, scopes) {
        Ok(Some(entry)) => entry.token.user,
        Ok(None) => return crate::api::unauthorized(),
        Err(denied) => return denied.into_response(),
    };
    let Some(project) = crate::projects::lookup(shared, id_part, Some(&user)) else {
        return not_found("Project");
    };
    let params = match params::parse(ctx) {
        Ok(params) => params,
        // lib/api/commits.rb rescues `Oj::ParseError` itself.
        Err(_) if matches!(route, Route::Commits) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": "Invalid json", "error": "Invalid json"}),
            );
        }
        Err(response) => return *response,
    };
    let call = Call { shared, ctx, user, project, params };
    let get = !write;
    match route {
        Route::MrList if get => crate::commits::list_mrs(&call),
        Route::MrList => crate::commits::create_mr(&call),
        Route::Mr(iid) if get => with_mr(&call, iid, get_mr),
        Route::Mr(iid) => crate::commits::update_mr(&call, iid),
        Route::Diffs(iid) => with_mr(&call, iid, diffs),
        Route::Versions(iid) => with_mr(&call, iid, versions),
        Route::Notes(iid) if get => with_mr(&call, iid, list_notes),
        Route::Notes(iid) => create_note(&call, iid),
        Route::Note(iid, note) => with_mr(&call, iid, |c, mr| one_note(c, mr, None, note)),
        Route::Discussions(iid) if get => with_mr(&call, iid, list_discussions),
        Route::Discussions(iid) => create_discussion(&call, iid),
        Route::Discussion(iid, d) if get => with_mr(&call, iid, |c, mr| get_discussion(c, mr, d)),
        Route::Discussion(iid, d) => resolve_discussion(&call, iid, d),
        Route::DiscussionNotes(iid, d) if get => with_mr(&call, iid, |c, mr| discussion_notes(c, mr, d)),
        Route::DiscussionNotes(iid, d) => reply(&call, iid, d),
        Route::DiscussionNote(iid, d, note) => with_mr(&call, iid, |c, mr| one_note(c, mr, Some(d), note)),
        Route::Status(sha) => crate::statuses::create(&call, sha),
        Route::CommitStatuses(sha) => crate::statuses::list(&call, sha),
        Route::Commits => crate::commits::create_commit(&call),
    }
}

fn with_mr(call: &Call<'_>, iid: u64, handler: impl FnOnce(&Call<'_>, &MrRecord) -> Response) -> Response {
    match find_mr(call.shared, &call.project, iid) {
        Some(mr) => handler(call, &mr),
        None => mr_not_found(),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Grape's catch-all for unknown API paths.
fn route_not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"error": "404 Not Found"}))
}

/// `not_found!(what)`: `{"message":"404 <what> Not Found"}`.
pub(crate) fn not_found(what: &str) -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"message": format!("404 {what} Not Found")}))
}

/// `ActiveRecord::RecordNotFound` rescued by `API::API`, as for an unknown MR iid.
pub(crate) fn mr_not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"message": "404 Not found"}))
}

/// `forbidden!(reason)`.
pub(crate) fn forbidden(reason: Option<&str>) -> Response {
    let message = match reason {
        Some(reason) => format!("403 Forbidden - {reason}"),
        None => "403 Forbidden".to_string(),
    };
    json_response(StatusCode::FORBIDDEN, &json!({ "message": message }))
}

/// `bad_request!(reason)`: `{"message":"400 Bad request - <reason>"}`.
pub(crate) fn bad_request(reason: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"message": format!("400 Bad request - {reason}")}))
}

pub(crate) fn created(body: &Value) -> Response {
    json_response(StatusCode::CREATED, body)
}

fn no_content() -> Response {
    let mut response = with_body(StatusCode::NO_CONTENT, "application/json", axum::body::Body::empty());
    response.headers_mut().remove(axum::http::header::CONTENT_TYPE);
    response
}

// ---------------------------------------------------------------------------------------------
// Entities

/// `Entities::UserBasic`.
pub(crate) fn user_basic(ctx: &ReqCtx, user: &SimUser) -> Value {
    let hash = format!("{:016x}{:016x}", fnv1a(user.username.as_bytes()), splitmix64(user.id));
    json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": "active",
        "locked": false,
        "avatar_url": format!("https://www.gravatar.com/avatar/{hash}?s=80&d=identicon"),
        "web_url": format!("{}{}/{}", ctx.origin, ctx.base_path, user.username),
    })
}

fn time(t: OffsetDateTime) -> String {
    crate::api::timestamp(t)
}

fn time_opt(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(t)))
}

/// `Entities::MergeRequest` (doc/api/merge_requests.md, "Get single MR"), a representative
/// subset with GitLab's field names.
pub(crate) fn mr_json(call: &Call<'_>, mr: &MrRecord, refs: Option<&DiffRefs>) -> Value {
    let ctx = call.ctx;
    let project = &call.project;
    let (notes_count, blocking_resolved) = {
        let store = call.shared.mrs();
        let notes: Vec<&NoteRecord> =
            store.notes.iter().filter(|n| n.project_id == project.id && n.iid == mr.iid).collect();
        (notes.len(), notes.iter().filter(|n| n.resolvable()).all(|n| n.resolved_by.is_some()))
    };
    let changes_count = refs
        .and_then(|r| project.repo.as_ref().and_then(|repo| repo_ops::diff(repo, &r.base_sha, &r.head_sha)))
        .map(|files| files.len().to_string());
    let sha = refs.map(|r| r.head_sha.clone()).or_else(|| head_sha(project, mr));
    let draft = ["draft:", "[draft]", "(draft)"].iter().any(|p| mr.title.to_ascii_lowercase().starts_with(p));
    let author = user_basic(ctx, &mr.author);
    let merged = mr.state == "merged";
    let closed = mr.state == "closed";
    let mut v = json!({
        "id": mr.id,
        "iid": mr.iid,
        "project_id": project.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": time(mr.created_at),
        "updated_at": time(mr.updated_at),
        "merged_by": if merged { &author } else { &Value::Null },
        "merge_user": if merged { &author } else { &Value::Null },
        "merged_at": time_opt(mr.merged_at),
        "closed_by": if closed { &author } else { &Value::Null },
        "closed_at": time_opt(mr.closed_at),
        "target_branch": mr.target(project),
        "source_branch": mr.source_branch,
        "user_notes_count": notes_count,
        "upvotes": 0,
        "downvotes": 0,
        "author": author,
        "assignees": [],
        "assignee": null,
        "reviewers": [],
        "source_project_id": project.id,
        "target_project_id": project.id,
        "labels": [],
        "draft": draft,
        "work_in_progress": draft,
        "milestone": null,
    });
    let rest = json!({
        "merge_when_pipeline_succeeds": false,
        "merge_status": "can_be_merged",
        "detailed_merge_status": if mr.state == "opened" { "mergeable" } else { "not_open" },
        "merge_after": null,
        "sha": sha,
        "merge_commit_sha": null,
        "squash_commit_sha": null,
        "discussion_locked": null,
        "should_remove_source_branch": null,
        "force_remove_source_branch": mr.force_remove_source_branch,
        "prepared_at": time(mr.created_at),
        "reference": format!("!{}", mr.iid),
        "references": {
            "short": format!("!{}", mr.iid),
            "relative": format!("!{}", mr.iid),
            "full": format!("{}!{}", project.path_with_namespace, mr.iid),
        },
        "web_url": format!("{}{}/{}/-/merge_requests/{}", ctx.origin, ctx.base_path, project.path_with_namespace, mr.iid),
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": null,
            "human_total_time_spent": null,
        },
        "squash": false,
        "squash_on_merge": false,
        "task_completion_status": { "count": 0, "completed_count": 0 },
        "has_conflicts": false,
        "blocking_discussions_resolved": blocking_resolved,
        "subscribed": false,
        "changes_count": changes_count,
        "latest_build_started_at": null,
        "latest_build_finished_at": null,
        "first_deployed_to_production_at": null,
        "pipeline": null,
        "head_pipeline": null,
        "diff_refs": refs.map(|r| json!({
            "base_sha": r.base_sha,
            "head_sha": r.head_sha,
            "start_sha": r.start_sha,
        })),
        "merge_error": null,
        "first_contribution": false,
        "user": { "can_merge": call.can_write_code() },
    });
    if let (Value::Object(head), Value::Object(tail)) = (&mut v, rest) {
        head.extend(tail);
    }
    v
}

/// `Entities::Note` (lib/api/entities/note.rb).
fn note_json(ctx: &ReqCtx, mr: &MrRecord, note: &NoteRecord) -> Value {
    let mut v = json!({
        "id": note.id,
        "type": note.kind.type_name(),
        "body": note.body,
        "attachment": null,
        "author": user_basic(ctx, &note.author),
        "created_at": time(note.created_at),
        "updated_at": time(note.updated_at),
        "system": false,
        "noteable_id": mr.id,
        "noteable_type": "MergeRequest",
        "project_id": note.project_id,
    });
    if note.kind == NoteKind::DiffNote {
        v["commit_id"] = json!(note.commit_id);
        v["position"] = note.position.as_ref().map_or(Value::Null, Position::to_json);
    }
    v["resolvable"] = json!(note.resolvable());
    if note.resolvable() {
        v["resolved"] = json!(note.resolved_by.is_some());
        v["resolved_by"] = note.resolved_by.as_ref().map_or(Value::Null, |u| user_basic(ctx, u));
        v["resolved_at"] = time_opt(note.resolved_at);
    }
    v["confidential"] = json!(note.internal);
    v["internal"] = json!(note.internal);
    v["imported"] = json!(false);
    v["imported_from"] = json!("none");
    v["noteable_iid"] = json!(mr.iid);
    v["commands_changes"] = json!({});
    v
}

/// `Entities::Discussion`: a thread is individual when it is one plain note.
fn discussion_json(ctx: &ReqCtx, mr: &MrRecord, notes: &[NoteRecord]) -> Value {
    json!({
        "id": notes.first().map(|n| n.discussion_id.clone()),
        "individual_note": notes.first().is_some_and(|n| n.kind == NoteKind::Plain),
        "notes": notes.iter().map(|n| note_json(ctx, mr, n)).collect::<Vec<_>>(),
    })
}

/// `Entities::Diff`, fields in the order of doc/api/merge_requests.md.
pub(crate) fn diff_json(file: &FileDiff) -> Value {
    json!({
        "old_path": file.old_path,
        "new_path": file.new_path,
        "a_mode": file.a_mode,
        "b_mode": file.b_mode,
        "diff": file.diff,
        "new_file": file.new_file,
        "renamed_file": file.renamed_file,
        "deleted_file": file.deleted_file,
        "generated_file": false,
        "collapsed": false,
        "too_large": false,
    })
}

// ---------------------------------------------------------------------------------------------
// Merge requests

fn get_mr(call: &Call<'_>, mr: &MrRecord) -> Response {
    let refs = diff_refs(call.shared, &call.project, mr);
    ok_json(&mr_json(call, mr, refs.as_ref()))
}

fn page_of(call: &Call<'_>) -> Result<Page, Box<Response>> {
    params::page(&call.params)
}

/// `GET …/merge_requests/:iid/diffs`: the diff of the current version, paginated.
fn diffs(call: &Call<'_>, mr: &MrRecord) -> Response {
    let page = match page_of(call) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let files = diff_refs(call.shared, &call.project, mr)
        .and_then(|r| call.project.repo.as_ref().and_then(|repo| repo_ops::diff(repo, &r.base_sha, &r.head_sha)))
        .unwrap_or_default();
    let items: Vec<Value> = files.iter().map(diff_json).collect();
    params::paginated(call.ctx, page, &items)
}

/// `GET …/merge_requests/:iid/versions` (doc/api/merge_requests.md), newest first.
fn versions(call: &Call<'_>, mr: &MrRecord) -> Response {
    diff_refs(call.shared, &call.project, mr);
    let versions = call.shared.mrs().mrs.get(&(mr.project_id, mr.iid)).map(|r| r.versions.clone()).unwrap_or_default();
    let latest = versions.last().map(|v| v.id);
    let items: Vec<Value> = versions
        .iter()
        .rev()
        .map(|v| {
            let size = call
                .project
                .repo
                .as_ref()
                .and_then(|repo| repo_ops::diff(repo, &v.refs.base_sha, &v.refs.head_sha))
                .map_or(0, |f| f.len());
            json!({
                "id": v.id,
                "head_commit_sha": v.refs.head_sha,
                "base_commit_sha": v.refs.base_sha,
                "start_commit_sha": v.refs.start_sha,
                "created_at": time(v.created_at),
                "merge_request_id": mr.id,
                "state": "collected",
                "real_size": size.to_string(),
                "patch_id_sha": null,
                "latest": Some(v.id) == latest,
            })
        })
        .collect();
    ok_json(&items)
}

// ---------------------------------------------------------------------------------------------
// Notes

/// The note body rules of `Notes::ActiveRecord`: present, at most 1,000,000 characters.
/// `Err` is the `errors.messages` hash as Ruby prints it.
fn check_body(body: &str) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err(r#":note=>["can't be blank"]"#.into());
    }
    if body.chars().count() > MAX_NOTE_LENGTH {
        return Err(format!(r#":note=>["is too long (maximum is {MAX_NOTE_LENGTH} characters)"]"#));
    }
    Ok(())
}

/// `requires :body, type: String`: `Err` is Grape's 400.
pub(crate) fn required_body(call: &Call<'_>) -> Result<String, Box<Response>> {
    match call.params.get("body") {
        None | Some(Value::Null) => Err(Box::new(grape_error("body is missing"))),
        Some(_) => params::text(&call.params, "body").ok_or_else(|| Box::new(grape_error("body is invalid"))),
    }
}

/// `GET …/notes` with `order_by` (`created_at`, `updated_at`) and `sort` (default `desc`),
/// the id as tie-breaker in the same direction.
fn list_notes(call: &Call<'_>, mr: &MrRecord) -> Response {
    let order_by = params::text(&call.params, "order_by").unwrap_or_else(|| "created_at".into());
    if !matches!(order_by.as_str(), "created_at" | "updated_at") {
        return grape_error("order_by does not have a valid value");
    }
    let sort = params::text(&call.params, "sort").unwrap_or_else(|| "desc".into());
    if !matches!(sort.as_str(), "asc" | "desc") {
        return grape_error("sort does not have a valid value");
    }
    let page = match page_of(call) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let mut notes: Vec<NoteRecord> =
        call.shared.mrs().notes.iter().filter(|n| n.project_id == mr.project_id && n.iid == mr.iid).cloned().collect();
    notes.sort_by(|a, b| {
        let by =
            if order_by == "updated_at" { a.updated_at.cmp(&b.updated_at) } else { a.created_at.cmp(&b.created_at) };
        let ordered = by.then(a.id.cmp(&b.id));
        if sort == "asc" { ordered } else { ordered.reverse() }
    });
    let items: Vec<Value> = notes.iter().map(|n| note_json(call.ctx, mr, n)).collect();
    params::paginated(call.ctx, page, &items)
}

/// `POST …/notes`: a plain note, which is also a one-note discussion.
fn create_note(call: &Call<'_>, iid: u64) -> Response {
    let body = match required_body(call) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let internal = match params::boolean(&call.params, "internal") {
        Ok(v) => v.unwrap_or(false),
        Err(()) => return grape_error("internal is invalid"),
    };
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    if let Err(errors) = check_body(&body) {
        return bad_request(&format!("Note {{{errors}}}"));
    }
    let now = OffsetDateTime::now_utc();
    let note = {
        let mut store = call.shared.mrs();
        let discussion_id = store.new_discussion_id(mr.project_id, mr.iid);
        store.add_note(NoteRecord {
            id: 0,
            project_id: mr.project_id,
            iid: mr.iid,
            discussion_id,
            kind: NoteKind::Plain,
            body,
            author: call.user.clone(),
            created_at: now,
            updated_at: now,
            position: None,
            commit_id: None,
            internal,
            resolved_by: None,
            resolved_at: None,
        })
    };
    touch(call.shared, &mr);
    created(&note_json(call.ctx, &mr, &note))
}

fn touch(shared: &Shared, mr: &MrRecord) {
    if let Some(record) = shared.mrs().mrs.get_mut(&(mr.project_id, mr.iid)) {
        record.updated_at = OffsetDateTime::now_utc();
    }
}

/// `GET/PUT/DELETE …/notes/:note_id` and `…/discussions/:id/notes/:note_id`.
fn one_note(call: &Call<'_>, mr: &MrRecord, discussion: Option<&str>, note_id: u64) -> Response {
    let found = call
        .shared
        .mrs()
        .notes
        .iter()
        .find(|n| n.id == note_id && n.project_id == mr.project_id && n.iid == mr.iid)
        .cloned();
    let Some(note) = found.filter(|n| discussion.is_none_or(|d| d == n.discussion_id)) else {
        return not_found("Note");
    };
    match call.ctx.method {
        Method::GET | Method::HEAD => ok_json(&note_json(call.ctx, mr, &note)),
        Method::PUT => update_note(call, mr, &note, discussion.is_some()),
        _ => {
            // `authorize! :admin_note, note` (the sim: the author only, see FIXTURES.md).
            if note.author.id != call.user.id {
                return forbidden(None);
            }
            call.shared.mrs().notes.retain(|n| n.id != note.id);
            no_content()
        }
    }
}

fn update_note(call: &Call<'_>, mr: &MrRecord, note: &NoteRecord, in_discussion: bool) -> Response {
    let Ok(resolved) = params::boolean(&call.params, "resolved") else {
        return grape_error("resolved is invalid");
    };
    let body = params::text(&call.params, "body");
    if in_discussion {
        // `exactly_one_of :body, :resolved`.
        match (&body, resolved) {
            (None, None) => return grape_error("body, resolved are missing, exactly one parameter must be provided"),
            (Some(_), Some(_)) => return grape_error("body, resolved are mutually exclusive"),
            _ => {}
        }
    }
    if let (Some(resolved), true) = (resolved, in_discussion) {
        // `resolve_note`: author, MR author or Developer+ (every member here).
        if !note.resolvable() {
            return bad_request("Note is not resolvable");
        }
        let now = OffsetDateTime::now_utc();
        let updated = {
            let mut store = call.shared.mrs();
            let Some(n) = store.notes.iter_mut().find(|n| n.id == note.id) else { return not_found("Note") };
            n.resolved_by = resolved.then(|| call.user.clone());
            n.resolved_at = resolved.then_some(now);
            n.clone()
        };
        return ok_json(&note_json(call.ctx, mr, &updated));
    }
    if body.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return grape_error("body is empty");
    }
    // `authorize! :admin_note, note` (the sim: the author only, see FIXTURES.md).
    if note.author.id != call.user.id {
        return forbidden(None);
    }
    let Some(body) = body else { return ok_json(&note_json(call.ctx, mr, note)) };
    if let Err(errors) = check_body(&body) {
        return bad_request(&format!("Failed to save note {{{errors}}}"));
    }
    let updated = {
        let mut store = call.shared.mrs();
        let Some(n) = store.notes.iter_mut().find(|n| n.id == note.id) else { return not_found("Note") };
        if n.body != body {
            n.body = body;
            n.updated_at = OffsetDateTime::now_utc();
        }
        n.clone()
    };
    ok_json(&note_json(call.ctx, mr, &updated))
}

// ---------------------------------------------------------------------------------------------
// Discussions

fn list_discussions(call: &Call<'_>, mr: &MrRecord) -> Response {
    let page = match page_of(call) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let groups = call.shared.mrs().discussions(mr.project_id, mr.iid);
    let items: Vec<Value> = groups.iter().map(|g| discussion_json(call.ctx, mr, g)).collect();
    params::paginated(call.ctx, page, &items)
}

fn discussion(call: &Call<'_>, mr: &MrRecord, id: &str) -> Option<Vec<NoteRecord>> {
    call.shared
        .mrs()
        .discussions(mr.project_id, mr.iid)
        .into_iter()
        .find(|g| g.first().is_some_and(|n| n.discussion_id == id))
}

fn get_discussion(call: &Call<'_>, mr: &MrRecord, id: &str) -> Response {
    match discussion(call, mr, id) {
        Some(notes) => ok_json(&discussion_json(call.ctx, mr, &notes)),
        None => not_found("Discussion"),
    }
}

fn discussion_notes(call: &Call<'_>, mr: &MrRecord, id: &str) -> Response {
    match discussion(call, mr, id) {
        Some(notes) => ok_json(&notes.iter().map(|n| note_json(call.ctx, mr, n)).collect::<Vec<_>>()),
        None => not_found("Notes"),
    }
}

/// Grape's checks of the `position` hash of `POST …/discussions`.
fn parse_position(raw: &Value) -> Result<Position, Box<Response>> {
    let refuse = |message: &str| Box::new(grape_error(message));
    if !raw.is_object() {
        return Err(refuse("position is invalid"));
    }
    let text = |key: &str| params::text(raw, key);
    let required = |key: &str| text(key).ok_or_else(|| refuse(&format!("position[{key}] is missing")));
    let base_sha = required("base_sha")?;
    let start_sha = required("start_sha")?;
    let head_sha = required("head_sha")?;
    let position_type = required("position_type")?;
    if !matches!(position_type.as_str(), "text" | "image" | "file") {
        return Err(refuse("position[position_type] does not have a valid value"));
    }
    let line = |key: &str| {
        params::integer(raw, key)
            .map_err(|()| refuse(&format!("position[{key}] is invalid")))
            .map(|v| v.and_then(|n| u64::try_from(n).ok()))
    };
    Ok(Position {
        position_type,
        base_sha,
        start_sha,
        head_sha,
        old_path: text("old_path").filter(|p| !p.is_empty()),
        new_path: text("new_path").filter(|p| !p.is_empty()),
        old_line: line("old_line")?,
        new_line: line("new_line")?,
        line_range: raw.get("line_range").filter(|v| v.is_object()).cloned(),
    })
}

/// Whether `position` points at the diff of one of the MR's versions, as DiffNote's
/// validations decide: `Err` is the `errors.messages` hash as Ruby prints it.
fn check_position(call: &Call<'_>, mr: &MrRecord, position: &Position) -> Result<(), String> {
    let incomplete = format!("{LINE_CODE_ERRORS}, :position=>[\"is incomplete\"]");
    let is_text = position.position_type == "text";
    if is_text && position.new_line.is_none() && position.old_line.is_none() {
        return Err(incomplete);
    }
    if position.new_path.is_none() && position.old_path.is_none() {
        return Err(incomplete);
    }
    let wanted = DiffRefs {
        base_sha: position.base_sha.clone(),
        start_sha: position.start_sha.clone(),
        head_sha: position.head_sha.clone(),
    };
    let current = diff_refs(call.shared, &call.project, mr);
    let known = current.as_ref() == Some(&wanted)
        || call
            .shared
            .mrs()
            .mrs
            .get(&(mr.project_id, mr.iid))
            .is_some_and(|r| r.versions.iter().any(|v| v.refs == wanted));
    let not_on_diff = || LINE_CODE_ERRORS.to_string();
    if !known {
        return Err(not_on_diff());
    }
    let files = call
        .project
        .repo
        .as_ref()
        .and_then(|repo| repo_ops::diff(repo, &wanted.base_sha, &wanted.head_sha))
        .unwrap_or_default();
    let file = files.iter().find(|f| match (&position.new_path, &position.old_path) {
        (Some(new), Some(old)) => *new == f.new_path && (*old == f.old_path || *old == f.new_path),
        (Some(new), None) => *new == f.new_path,
        (None, Some(old)) => *old == f.old_path,
        (None, None) => false,
    });
    let Some(file) = file else { return Err(not_on_diff()) };
    if !is_text {
        return Ok(());
    }
    let lines = file.lines();
    let on_diff = match (position.old_line, position.new_line) {
        (None, Some(new)) => lines.added.contains(&new),
        (Some(old), None) => lines.removed.contains(&old),
        (Some(old), Some(new)) => lines.context.contains(&(old, new)),
        (None, None) => false,
    };
    if on_diff { Ok(()) } else { Err(not_on_diff()) }
}

/// `POST …/discussions`: a thread, on a diff line when `position` is given.
fn create_discussion(call: &Call<'_>, iid: u64) -> Response {
    let body = match required_body(call) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let position = match call.params.get("position").filter(|v| !v.is_null()) {
        None => None,
        Some(raw) => match parse_position(raw) {
            Ok(position) => Some(position),
            Err(response) => return *response,
        },
    };
    let commit_id = params::text(&call.params, "commit_id");
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    let mut errors = Vec::new();
    if let Err(e) = check_body(&body) {
        errors.push(e);
    }
    if let Some(position) = &position
        && let Err(e) = check_position(call, &mr, position)
    {
        errors.push(e);
    }
    if !errors.is_empty() {
        return bad_request(&format!("Note {{{}}}", errors.join(", ")));
    }
    let now = OffsetDateTime::now_utc();
    let note = {
        let mut store = call.shared.mrs();
        let discussion_id = store.new_discussion_id(mr.project_id, mr.iid);
        store.add_note(NoteRecord {
            id: 0,
            project_id: mr.project_id,
            iid: mr.iid,
            discussion_id,
            kind: if position.is_some() { NoteKind::DiffNote } else { NoteKind::DiscussionNote },
            body,
            author: call.user.clone(),
            created_at: now,
            updated_at: now,
            commit_id: position.as_ref().and(commit_id),
            position,
            internal: false,
            resolved_by: None,
            resolved_at: None,
        })
    };
    touch(call.shared, &mr);
    created(&discussion_json(call.ctx, &mr, std::slice::from_ref(&note)))
}

/// `POST …/discussions/:id/notes`: a reply; replying to a plain note turns it into a thread.
fn reply(call: &Call<'_>, iid: u64, id: &str) -> Response {
    let body = match required_body(call) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    if discussion(call, &mr, id).is_none() {
        return not_found("Discussion");
    }
    if let Err(errors) = check_body(&body) {
        return bad_request(&format!("Note {{{errors}}}"));
    }
    let now = OffsetDateTime::now_utc();
    let note = {
        let mut store = call.shared.mrs();
        for n in store.notes.iter_mut().filter(|n| n.discussion_id == id && n.kind == NoteKind::Plain) {
            n.kind = NoteKind::DiscussionNote;
        }
        store.add_note(NoteRecord {
            id: 0,
            project_id: mr.project_id,
            iid: mr.iid,
            discussion_id: id.to_string(),
            kind: NoteKind::DiscussionNote,
            body,
            author: call.user.clone(),
            created_at: now,
            updated_at: now,
            position: None,
            commit_id: None,
            internal: false,
            resolved_by: None,
            resolved_at: None,
        })
    };
    touch(call.shared, &mr);
    created(&note_json(call.ctx, &mr, &note))
}

/// `PUT …/discussions/:id` with `resolved`: every resolvable note of the thread.
fn resolve_discussion(call: &Call<'_>, iid: u64, id: &str) -> Response {
    let resolved = match params::boolean(&call.params, "resolved") {
        Ok(Some(v)) => v,
        Ok(None) => return grape_error("resolved is missing"),
        Err(()) => return grape_error("resolved is invalid"),
    };
    let Some(mr) = find_mr(call.shared, &call.project, iid) else { return mr_not_found() };
    let Some(notes) = discussion(call, &mr, id) else { return not_found("Discussion") };
    // `discussion.can_resolve?`: only threads with resolvable notes.
    if !notes.iter().any(NoteRecord::resolvable) {
        return forbidden(None);
    }
    let now = OffsetDateTime::now_utc();
    {
        let mut store = call.shared.mrs();
        for n in store.notes.iter_mut().filter(|n| n.discussion_id == id && n.resolvable()) {
            if resolved && n.resolved_by.is_none() {
                n.resolved_by = Some(call.user.clone());
                n.resolved_at = Some(now);
            } else if !resolved {
                n.resolved_by = None;
                n.resolved_at = None;
            }
        }
    }
    match discussion(call, &mr, id) {
        Some(notes) => ok_json(&discussion_json(call.ctx, &mr, &notes)),
        None => not_found("Discussion"),
    }
}

// ---------------------------------------------------------------------------------------------
// Test accessors

/// A comment as the simulator keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNote {
    pub id: u64,
    pub discussion_id: String,
    /// `None` for a plain note, `"DiscussionNote"` or `"DiffNote"`.
    pub note_type: Option<&'static str>,
    pub body: String,
    pub author_id: u64,
    /// A diff note's `position` as the API shows it (`base_sha`, `start_sha`, `head_sha`,
    /// `old_path`, `new_path`, `position_type`, `old_line`, `new_line`, `line_range`).
    pub position: Option<Value>,
    pub resolvable: bool,
    pub resolved: bool,
    pub internal: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A thread: `individual_note` is a single plain note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimDiscussion {
    pub id: String,
    pub individual_note: bool,
    /// Whether every resolvable note is resolved (false for threads without any).
    pub resolved: bool,
    pub notes: Vec<SimNote>,
}

/// A merge request as the simulator keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMergeRequest {
    pub id: u64,
    pub iid: u64,
    pub title: String,
    pub description: String,
    pub state: String,
    pub source_branch: String,
    /// `None`: the project's default branch.
    pub target_branch: Option<String>,
    pub author_id: u64,
}

fn sim_note(note: &NoteRecord) -> SimNote {
    SimNote {
        id: note.id,
        discussion_id: note.discussion_id.clone(),
        note_type: note.kind.type_name(),
        body: note.body.clone(),
        author_id: note.author.id,
        position: note.position.as_ref().map(Position::to_json),
        resolvable: note.resolvable(),
        resolved: note.resolved_by.is_some(),
        internal: note.internal,
        created_at: note.created_at,
        updated_at: note.updated_at,
    }
}

impl RunningSim {
    /// Registers merge request `iid` of a project (replacing any earlier registration); its
    /// head is `refs/merge-requests/<iid>/head` when the repository has it, else the source
    /// branch. `false` when there is no such project.
    pub fn open_merge_request(
        &self,
        project_id: u64,
        iid: u64,
        source_branch: &str,
        target_branch: &str,
        title: &str,
    ) -> bool {
        if self.shared().projects().get(project_id).is_none() {
            return false;
        }
        let mut store = self.shared().mrs();
        let mut record =
            store.mrs.remove(&(project_id, iid)).unwrap_or_else(|| new_record(&mut store, project_id, iid));
        record.source_branch = source_branch.to_string();
        record.target_branch = Some(target_branch.to_string());
        record.title = title.to_string();
        record.state = "opened".into();
        record.merged_at = None;
        record.closed_at = None;
        record.updated_at = OffsetDateTime::now_utc();
        store.mrs.insert((project_id, iid), record);
        true
    }

    /// Sets a merge request's state to `opened`, `closed` or `merged`. `false` when the state
    /// is none of these or there is no such merge request (registered or with a ref).
    pub fn set_merge_request_state(&self, project_id: u64, iid: u64, state: &str) -> bool {
        if !matches!(state, "opened" | "closed" | "merged") {
            return false;
        }
        let Some(project) = self.shared().projects().get(project_id).cloned() else { return false };
        if find_mr(self.shared(), &project, iid).is_none() {
            return false;
        }
        let now = OffsetDateTime::now_utc();
        let mut store = self.shared().mrs();
        let Some(record) = store.mrs.get_mut(&(project_id, iid)) else { return false };
        record.state = state.to_string();
        record.merged_at = (state == "merged").then_some(now);
        record.closed_at = (state == "closed").then_some(now);
        record.updated_at = now;
        true
    }

    /// The merge requests the simulator knows of in a project (registered, created through
    /// the API, or already seen through their ref), by iid.
    pub fn merge_requests(&self, project_id: u64) -> Vec<SimMergeRequest> {
        let Some(project) = self.shared().projects().get(project_id).cloned() else { return Vec::new() };
        all_mrs(self.shared(), &project)
            .into_iter()
            .map(|mr| SimMergeRequest {
                id: mr.id,
                iid: mr.iid,
                title: mr.title,
                description: mr.description,
                state: mr.state,
                source_branch: mr.source_branch,
                target_branch: mr.target_branch,
                author_id: mr.author.id,
            })
            .collect()
    }

    /// Every note of a merge request (plain, thread and diff notes), oldest first.
    pub fn notes(&self, project_id: u64, iid: u64) -> Vec<SimNote> {
        let store = self.shared().mrs();
        let mut notes: Vec<&NoteRecord> =
            store.notes.iter().filter(|n| n.project_id == project_id && n.iid == iid).collect();
        notes.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        notes.into_iter().map(sim_note).collect()
    }

    /// The merge request's discussions as `GET …/discussions` orders them.
    pub fn discussions(&self, project_id: u64, iid: u64) -> Vec<SimDiscussion> {
        self.shared()
            .mrs()
            .discussions(project_id, iid)
            .iter()
            .map(|notes| {
                let resolvable: Vec<&NoteRecord> = notes.iter().filter(|n| n.resolvable()).collect();
                SimDiscussion {
                    id: notes.first().map(|n| n.discussion_id.clone()).unwrap_or_default(),
                    individual_note: notes.first().is_some_and(|n| n.kind == NoteKind::Plain),
                    resolved: !resolvable.is_empty() && resolvable.iter().all(|n| n.resolved_by.is_some()),
                    notes: notes.iter().map(sim_note).collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_recognised() {
        assert!(is_route("/api/v4/projects/1/merge_requests"));
        assert!(is_route("/api/v4/projects/g%2Fp/merge_requests/3/notes"));
        assert!(is_route("/api/v4/projects/1/statuses/abc"));
        assert!(is_route("/api/v4/projects/1/repository/commits/abc/statuses"));
        assert!(is_route("/api/v4/projects/1/repository/commits"));
        assert!(!is_route("/api/v4/projects/1/repository/commits/abc"));
        assert!(!is_route("/api/v4/projects/1/repository/branches/main"));
        assert!(!is_route("/api/v4/projects/1"));
        assert!(matches!(parse_route("merge_requests/x/notes"), Some(Err(_))));
        assert!(matches!(
            parse_route("merge_requests/1/discussions/abc/notes/7"),
            Some(Ok(Route::DiscussionNote(1, "abc", 7)))
        ));
        assert!(parse_route("merge_requests/1/unknown").is_none());
    }

    #[test]
    fn body_rules() {
        assert_eq!(check_body("hi"), Ok(()));
        assert_eq!(check_body("  "), Err(r#":note=>["can't be blank"]"#.to_string()));
        let long = "x".repeat(MAX_NOTE_LENGTH + 1);
        assert!(check_body(&long).unwrap_err().contains("maximum is 1000000"));
        assert_eq!(check_body(&"x".repeat(MAX_NOTE_LENGTH)), Ok(()));
    }

    #[test]
    fn discussion_ids_are_forty_hex_digits() {
        let mut store = MrStore::default();
        let a = store.new_discussion_id(1, 1);
        let b = store.new_discussion_id(1, 1);
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

//! Merge requests, diffs, notes, discussions and commit statuses against a real repository.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use gitlab_sim::{RunningSim, SimConfig, TestRepo, Tree, demo};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{client, header, sim_with};

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gitlab-sim-mr-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `main` moved on after `feature` branched off; merge request 1 is `feature`.
pub(super) struct Fixture {
    _dir: TempDir,
    pub(super) repo: TestRepo,
    pub(super) base: String,
    pub(super) main: String,
    pub(super) feature: String,
}

fn app(lines: &[(usize, &str)], inserted_after_8: &[&str]) -> String {
    let mut out = String::new();
    for n in 1..=30 {
        match lines.iter().find(|(at, _)| *at == n) {
            Some((_, text)) => out.push_str(&format!("{text}\n")),
            None => out.push_str(&format!("line {n}\n")),
        }
        if n == 8 {
            for line in inserted_after_8 {
                out.push_str(&format!("{line}\n"));
            }
        }
    }
    out
}

pub(super) fn fixture() -> Fixture {
    let dir = TempDir::new("repo");
    let mut repo = TestRepo::init(dir.0.join("repo.git")).unwrap();
    let tree = Tree::new().file("README.md", "# Demo\n").file("src/app.py", app(&[], &[])).file("old.txt", "bye\n");
    let base = repo.commit(&tree, "base", &[]).unwrap();
    let main = repo.commit(&tree.clone().file("README.md", "# Demo\n\nMore.\n"), "main moves on", &[&base]).unwrap();
    let changed = tree
        .file("src/app.py", app(&[(5, "line five")], &["added A", "added B"]))
        .file("new.txt", "hello\n")
        .without("old.txt");
    let feature = repo.commit(&changed, "feature", &[&base]).unwrap();
    repo.branch("main", &main).unwrap();
    repo.branch("feature", &feature).unwrap();
    repo.merge_request(1, &feature).unwrap();
    Fixture { _dir: dir, repo, base, main, feature }
}

pub(super) async fn sim_for(fx: &Fixture) -> RunningSim {
    let mut config = SimConfig::default();
    config.projects[0].repo = Some(fx.repo.path().to_path_buf());
    sim_with(config).await
}

pub(super) async fn call(
    sim: &RunningSim,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = client(sim).request(method, format!("{}{path}", sim.base_url())).header("PRIVATE-TOKEN", token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    request.send().await.unwrap()
}

pub(super) async fn form(
    sim: &RunningSim,
    method: Method,
    path: &str,
    token: &str,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect();
    client(sim)
        .request(method, format!("{}{path}", sim.base_url()))
        .header("PRIVATE-TOKEN", token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const MR: &str = "/api/v4/projects/1/merge_requests/1";

#[tokio::test]
async fn merge_request_has_diff_refs_from_the_repository() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let (status, mr) = body(call(&sim, Method::GET, MR, demo::READONLY, None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mr["iid"], 1);
    assert_eq!(mr["project_id"], 1);
    assert_eq!(mr["state"], "opened");
    assert_eq!(mr["title"], "Merge request !1");
    assert_eq!(mr["source_branch"], "feature");
    assert_eq!(mr["target_branch"], "main");
    assert_eq!(mr["source_project_id"], 1);
    assert_eq!(mr["target_project_id"], 1);
    assert_eq!(mr["sha"], fx.feature);
    assert_eq!(mr["diff_refs"], json!({"base_sha": fx.base, "start_sha": fx.main, "head_sha": fx.feature}));
    assert_eq!(mr["web_url"], format!("{}/demo/backend/-/merge_requests/1", sim.base_url()));
    assert_eq!(mr["author"]["username"], "root");
    assert_eq!(mr["changes_count"], "3");
    assert!(mr["id"].as_u64().unwrap() > 0);

    // The same MR by URL-encoded path.
    let (status, by_path) =
        body(call(&sim, Method::GET, "/api/v4/projects/demo%2Fbackend/merge_requests/1", demo::API, None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_path["id"], mr["id"]);

    let (status, missing) =
        body(call(&sim, Method::GET, "/api/v4/projects/1/merge_requests/99", demo::API, None).await).await;
    assert_eq!((status, missing), (StatusCode::NOT_FOUND, json!({"message": "404 Not found"})));
    let (status, _) =
        body(call(&sim, Method::GET, "/api/v4/projects/77/merge_requests/1", demo::API, None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unauthenticated = client(&sim).get(format!("{}{MR}", sim.base_url())).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    // A registered MR without a ref follows its source branch; states can be set.
    assert!(sim.open_merge_request(1, 7, "feature", "main", "Fix the leak"));
    let (_, seven) = body(call(&sim, Method::GET, "/api/v4/projects/1/merge_requests/7", demo::API, None).await).await;
    assert_eq!(seven["title"], "Fix the leak");
    assert_eq!(seven["sha"], fx.feature);
    assert!(sim.set_merge_request_state(1, 1, "merged"));
    assert!(!sim.set_merge_request_state(1, 99, "merged"));
    let (_, merged) = body(call(&sim, Method::GET, MR, demo::API, None).await).await;
    assert_eq!(merged["state"], "merged");
    assert!(merged["merged_at"].is_string());
    assert_eq!(sim.merge_requests(1).iter().map(|m| m.iid).collect::<Vec<_>>(), vec![1, 7]);
}

#[tokio::test]
async fn diffs_are_gitlabs_per_file_entities_and_paginated() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let response = call(&sim, Method::GET, &format!("{MR}/diffs"), demo::API, None).await;
    assert_eq!(header(&response, "x-total"), "3");
    assert_eq!(header(&response, "x-per-page"), "20");
    let (status, files) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    let by_path = |p: &str| files.as_array().unwrap().iter().find(|f| f["new_path"] == p).cloned().unwrap();
    let app = by_path("src/app.py");
    assert_eq!(app["old_path"], "src/app.py");
    assert_eq!((app["a_mode"].as_str(), app["b_mode"].as_str()), (Some("100644"), Some("100644")));
    let diff = app["diff"].as_str().unwrap();
    assert!(diff.starts_with("@@ -2,10 +2,12 @@"), "{diff}");
    assert!(diff.contains("\n-line 5\n+line five\n") && diff.contains("\n+added A\n+added B\n"), "{diff}");
    for key in ["new_file", "renamed_file", "deleted_file", "generated_file", "collapsed", "too_large"] {
        assert_eq!(app[key], false, "{key}");
    }
    let new = by_path("new.txt");
    assert_eq!(
        (new["new_file"].as_bool(), new["a_mode"].as_str(), new["old_path"].as_str()),
        (Some(true), Some("0"), Some("new.txt"))
    );
    assert_eq!(new["diff"], "@@ -0,0 +1 @@\n+hello\n");
    let old = by_path("old.txt");
    assert_eq!((old["deleted_file"].as_bool(), old["b_mode"].as_str()), (Some(true), Some("0")));

    let page = call(&sim, Method::GET, &format!("{MR}/diffs?per_page=2"), demo::API, None).await;
    assert_eq!(header(&page, "x-next-page"), "2");
    assert_eq!(header(&page, "x-total-pages"), "2");
    assert!(header(&page, "link").contains("page=2&per_page=2>; rel=\"next\""), "{}", header(&page, "link"));
    let (_, first) = body(page).await;
    assert_eq!(first.as_array().unwrap().len(), 2);
    let (_, second) =
        body(call(&sim, Method::GET, &format!("{MR}/diffs?per_page=2&page=2"), demo::API, None).await).await;
    assert_eq!(second.as_array().unwrap().len(), 1);
    let (status, bad) = body(call(&sim, Method::GET, &format!("{MR}/diffs?per_page=0"), demo::API, None).await).await;
    assert_eq!((status, bad), (StatusCode::BAD_REQUEST, json!({"error": "per_page has a value not allowed"})));

    let (_, versions) = body(call(&sim, Method::GET, &format!("{MR}/versions"), demo::API, None).await).await;
    assert_eq!(versions[0]["head_commit_sha"], fx.feature);
    assert_eq!(versions[0]["base_commit_sha"], fx.base);
    assert_eq!(versions[0]["start_commit_sha"], fx.main);
}

#[tokio::test]
async fn notes_are_created_listed_edited_by_their_author_only_and_deleted() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let notes = format!("{MR}/notes");
    let (status, first) = body(call(&sim, Method::POST, &notes, demo::API, Some(json!({"body": "first"}))).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["body"], "first");
    assert_eq!(first["type"], Value::Null);
    assert_eq!(first["author"]["id"], 101);
    assert_eq!(first["author"]["username"], "demo-user");
    assert_eq!(first["system"], false);
    assert_eq!(first["noteable_type"], "MergeRequest");
    assert_eq!(first["noteable_iid"], 1);
    assert_eq!(first["resolvable"], false);
    assert_eq!(first["internal"], false);
    assert!(first.get("resolved").is_none(), "only resolvable notes show resolved");
    let (status, second) =
        body(form(&sim, Method::POST, &notes, demo::API, &[("body", "second <!-- marker -->")]).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["body"], "second <!-- marker -->");

    let (_, listed) = body(call(&sim, Method::GET, &notes, demo::READONLY, None).await).await;
    let bodies: Vec<&str> = listed.as_array().unwrap().iter().map(|n| n["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["second <!-- marker -->", "first"], "newest first by default");
    let (_, asc) =
        body(call(&sim, Method::GET, &format!("{notes}?sort=asc&order_by=updated_at"), demo::API, None).await).await;
    assert_eq!(asc[0]["body"], "first");
    let (status, bad) = body(call(&sim, Method::GET, &format!("{notes}?order_by=id"), demo::API, None).await).await;
    assert_eq!((status, bad), (StatusCode::BAD_REQUEST, json!({"error": "order_by does not have a valid value"})));

    let one = format!("{notes}/{}", first["id"]);
    let (status, edited) =
        body(call(&sim, Method::PUT, &one, demo::API, Some(json!({"body": "first, edited"}))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(edited["body"], "first, edited");
    assert_eq!(edited["id"], first["id"]);
    let (status, denied) =
        body(call(&sim, Method::PUT, &one, demo::PROJECT_BOT, Some(json!({"body": "hijack"}))).await).await;
    assert_eq!((status, denied), (StatusCode::FORBIDDEN, json!({"message": "403 Forbidden"})));
    let (status, _) = body(call(&sim, Method::DELETE, &one, demo::PROJECT_BOT, None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, empty) = body(call(&sim, Method::PUT, &one, demo::API, Some(json!({"body": ""}))).await).await;
    assert_eq!((status, empty), (StatusCode::BAD_REQUEST, json!({"error": "body is empty"})));

    // Validation answers.
    let (status, blank) = body(call(&sim, Method::POST, &notes, demo::API, Some(json!({"body": ""}))).await).await;
    assert_eq!(
        (status, blank),
        (StatusCode::BAD_REQUEST, json!({"message": "400 Bad request - Note {:note=>[\"can't be blank\"]}"}))
    );
    let (status, missing) = body(call(&sim, Method::POST, &notes, demo::API, Some(json!({}))).await).await;
    assert_eq!((status, missing), (StatusCode::BAD_REQUEST, json!({"error": "body is missing"})));
    let long = "x".repeat(1_000_001);
    let (status, too_long) = body(call(&sim, Method::POST, &notes, demo::API, Some(json!({"body": long}))).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        too_long["message"],
        "400 Bad request - Note {:note=>[\"is too long (maximum is 1000000 characters)\"]}"
    );
    let (status, on_missing_mr) = body(
        call(&sim, Method::POST, "/api/v4/projects/1/merge_requests/42/notes", demo::API, Some(json!({"body": "x"})))
            .await,
    )
    .await;
    assert_eq!((status, on_missing_mr), (StatusCode::NOT_FOUND, json!({"message": "404 Not found"})));

    // A read_api token may read but not write.
    let (status, scope) =
        body(call(&sim, Method::POST, &notes, demo::READONLY, Some(json!({"body": "nope"}))).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(scope["error"], "insufficient_scope");
    assert_eq!(scope["error_description"], "The request requires higher privileges than provided by the access token.");

    let kept = sim.notes(1, 1);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].body, "first, edited");
    assert_eq!(kept[0].author_id, 101);
    assert_eq!(kept[0].note_type, None);
    assert!(kept[0].updated_at >= kept[0].created_at);

    let response = call(&sim, Method::DELETE, &one, demo::API, None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.notes(1, 1).len(), 1);
    let (status, gone) = body(call(&sim, Method::GET, &one, demo::API, None).await).await;
    assert_eq!((status, gone), (StatusCode::NOT_FOUND, json!({"message": "404 Note Not Found"})));
}

fn position(fx: &Fixture, path: &str, old_line: Option<u64>, new_line: Option<u64>) -> Value {
    let mut p = json!({
        "position_type": "text",
        "base_sha": fx.base,
        "start_sha": fx.main,
        "head_sha": fx.feature,
        "old_path": path,
        "new_path": path,
    });
    if let Some(l) = old_line {
        p["old_line"] = json!(l);
    }
    if let Some(l) = new_line {
        p["new_line"] = json!(l);
    }
    p
}

const NOT_ON_DIFF: &str = "400 Bad request - Note {:line_code=>[\"can't be blank\", \"must be a valid line code\"]}";

#[tokio::test]
async fn diff_positions_are_checked_against_the_diff() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let discussions = format!("{MR}/discussions");
    let post =
        |p: Value| call(&sim, Method::POST, &discussions, demo::API, Some(json!({"body": "finding", "position": p})));

    // An added line: new_line only.
    let (status, thread) = body(post(position(&fx, "src/app.py", None, Some(9))).await).await;
    assert_eq!(status, StatusCode::CREATED, "{thread}");
    assert_eq!(thread["individual_note"], false);
    assert_eq!(thread["id"].as_str().unwrap().len(), 40);
    let note = &thread["notes"][0];
    assert_eq!(note["type"], "DiffNote");
    assert_eq!(note["resolvable"], true);
    assert_eq!(note["resolved"], false);
    assert_eq!(note["resolved_by"], Value::Null);
    assert_eq!(note["position"]["new_line"], 9);
    assert_eq!(note["position"]["old_line"], Value::Null);
    assert_eq!(note["position"]["head_sha"], fx.feature);
    assert_eq!(note["position"]["position_type"], "text");
    // A removed line (old only), an unchanged line in a hunk (both), a new file.
    for p in [
        position(&fx, "src/app.py", Some(5), None),
        position(&fx, "src/app.py", Some(7), Some(7)),
        position(&fx, "new.txt", None, Some(1)),
        position(&fx, "old.txt", Some(1), None),
    ] {
        let (status, answer) = body(post(p).await).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    // The same with Rack's form keys.
    let pairs = [
        ("body", "form finding"),
        ("position[position_type]", "text"),
        ("position[base_sha]", fx.base.as_str()),
        ("position[start_sha]", fx.main.as_str()),
        ("position[head_sha]", fx.feature.as_str()),
        ("position[old_path]", "src/app.py"),
        ("position[new_path]", "src/app.py"),
        ("position[new_line]", "10"),
    ];
    let (status, answer) = body(form(&sim, Method::POST, &discussions, demo::API, &pairs).await).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["notes"][0]["position"]["new_line"], 10);

    // Not on the diff: an untouched line, a context line given as added, an added line given
    // as unchanged, an unknown path, a head that is not the MR's.
    let mut wrong_head = position(&fx, "src/app.py", None, Some(9));
    wrong_head["head_sha"] = json!(fx.main);
    for p in [
        position(&fx, "src/app.py", Some(20), Some(22)),
        position(&fx, "src/app.py", None, Some(22)),
        position(&fx, "src/app.py", None, Some(7)),
        position(&fx, "src/app.py", Some(9), Some(9)),
        position(&fx, "README.md", None, Some(3)),
        position(&fx, "nope.rs", None, Some(1)),
        wrong_head,
    ] {
        let (status, answer) = body(post(p.clone()).await).await;
        assert_eq!((status, answer), (StatusCode::BAD_REQUEST, json!({"message": NOT_ON_DIFF})), "{p}");
    }
    let (status, incomplete) = body(post(position(&fx, "src/app.py", None, None)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        incomplete["message"],
        "400 Bad request - Note {:line_code=>[\"can't be blank\", \"must be a valid line code\"], :position=>[\"is incomplete\"]}"
    );
    let mut no_sha = position(&fx, "src/app.py", None, Some(9));
    no_sha.as_object_mut().unwrap().remove("base_sha");
    let (status, missing) = body(post(no_sha).await).await;
    assert_eq!((status, missing), (StatusCode::BAD_REQUEST, json!({"error": "position[base_sha] is missing"})));

    let kept = sim.discussions(1, 1);
    assert_eq!(kept.len(), 6);
    assert!(kept.iter().all(|d| d.notes[0].note_type == Some("DiffNote")));
    let position = kept[0].notes[0].position.as_ref().unwrap();
    assert_eq!((position["new_line"].as_u64(), position["new_path"].as_str()), (Some(9), Some("src/app.py")));
}

#[tokio::test]
async fn threads_replies_resolution_and_the_two_listings() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let discussions = format!("{MR}/discussions");
    let (_, plain) =
        body(call(&sim, Method::POST, &format!("{MR}/notes"), demo::API, Some(json!({"body": "summary"}))).await).await;
    let (status, thread) =
        body(call(&sim, Method::POST, &discussions, demo::API, Some(json!({"body": "a thread"}))).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(thread["notes"][0]["type"], "DiscussionNote");
    assert_eq!(thread["notes"][0]["resolvable"], true);
    let id = thread["id"].as_str().unwrap().to_string();

    let (status, reply) = body(
        call(
            &sim,
            Method::POST,
            &format!("{discussions}/{id}/notes"),
            demo::PROJECT_BOT,
            Some(json!({"body": "a reply"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(reply["type"], "DiscussionNote");
    assert_eq!(reply["author"]["id"], 201);

    let (_, listed) = body(call(&sim, Method::GET, &discussions, demo::READONLY, None).await).await;
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["individual_note"], true);
    assert_eq!(listed[0]["notes"][0]["id"], plain["id"]);
    assert_eq!(listed[1]["id"], id.as_str());
    assert_eq!(listed[1]["notes"].as_array().unwrap().len(), 2);
    let (_, notes) = body(call(&sim, Method::GET, &format!("{MR}/notes?sort=asc"), demo::API, None).await).await;
    let bodies: Vec<&str> = notes.as_array().unwrap().iter().map(|n| n["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["summary", "a thread", "a reply"]);

    let (status, one) = body(call(&sim, Method::GET, &format!("{discussions}/{id}"), demo::API, None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["notes"][1]["body"], "a reply");
    let (status, none) =
        body(call(&sim, Method::GET, &format!("{discussions}/{}", "0".repeat(40)), demo::API, None).await).await;
    assert_eq!((status, none), (StatusCode::NOT_FOUND, json!({"message": "404 Discussion Not Found"})));

    // Resolve with the query parameter, unresolve with a body.
    let (status, resolved) =
        body(call(&sim, Method::PUT, &format!("{discussions}/{id}?resolved=true"), demo::API, None).await).await;
    assert_eq!(status, StatusCode::OK);
    for note in resolved["notes"].as_array().unwrap() {
        assert_eq!(note["resolved"], true);
        assert_eq!(note["resolved_by"]["id"], 101);
        assert!(note["resolved_at"].is_string());
    }
    assert!(sim.discussions(1, 1)[1].resolved);
    let (_, mr) = body(call(&sim, Method::GET, MR, demo::API, None).await).await;
    assert_eq!(mr["blocking_discussions_resolved"], true);
    let (status, unresolved) = body(
        call(&sim, Method::PUT, &format!("{discussions}/{id}"), demo::API, Some(json!({"resolved": false}))).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unresolved["notes"][0]["resolved"], false);
    assert!(!sim.discussions(1, 1)[1].resolved);
    let (status, missing) =
        body(call(&sim, Method::PUT, &format!("{discussions}/{id}"), demo::API, Some(json!({}))).await).await;
    assert_eq!((status, missing), (StatusCode::BAD_REQUEST, json!({"error": "resolved is missing"})));
    // A plain note's discussion cannot be resolved.
    let plain_discussion = listed[0]["id"].as_str().unwrap();
    let (status, _) = body(
        call(&sim, Method::PUT, &format!("{discussions}/{plain_discussion}?resolved=true"), demo::API, None).await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, scope) =
        body(call(&sim, Method::PUT, &format!("{discussions}/{id}?resolved=true"), demo::READONLY, None).await).await;
    assert_eq!((status, scope["error"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));

    // Replying to a plain note makes it a thread.
    let (status, _) = body(
        call(
            &sim,
            Method::POST,
            &format!("{discussions}/{plain_discussion}/notes"),
            demo::API,
            Some(json!({"body": "more"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let converted = &sim.discussions(1, 1)[0];
    assert!(!converted.individual_note);
    assert_eq!(converted.notes[0].note_type, Some("DiscussionNote"));
}

#[tokio::test]
async fn commit_statuses_are_set_moved_on_and_listed() {
    let mut fx = fixture();
    // One commit only a merge request ref reaches, one no ref reaches.
    let only_mr = fx.repo.commit(&Tree::new().file("a", "a\n"), "only in MR 5", &[&fx.main]).unwrap();
    fx.repo.merge_request(5, &only_mr).unwrap();
    let dangling = fx.repo.commit(&Tree::new().file("b", "b\n"), "dangling", &[&fx.main]).unwrap();
    let sim = sim_for(&fx).await;
    for (sha, status, answer_ref) in
        [(&only_mr, StatusCode::CREATED, Some("feature")), (&dangling, StatusCode::NOT_FOUND, None)]
    {
        let path = format!("/api/v4/projects/1/statuses/{sha}");
        let (got, answer) =
            body(call(&sim, Method::POST, &path, demo::API, Some(json!({"state": "pending"}))).await).await;
        assert_eq!(got, status, "{answer}");
        match answer_ref {
            // The source branch of the merge request whose ref reaches it.
            Some(r) => assert_eq!(answer["ref"], r),
            None => assert_eq!(answer, json!({"message": "404 References for commit Not Found"})),
        }
    }

    let path = format!("/api/v4/projects/1/statuses/{}", fx.feature);
    let (status, running) = body(
        call(
            &sim,
            Method::POST,
            &path,
            demo::API,
            Some(json!({"state": "running", "name": "codesec", "description": "Scanning"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{running}");
    assert_eq!(running["status"], "running");
    assert_eq!(running["name"], "codesec");
    assert_eq!(running["ref"], "feature");
    assert_eq!(running["sha"], fx.feature);
    assert_eq!(running["allow_failure"], false);
    assert_eq!(running["author"]["id"], 101);
    assert!(running["started_at"].is_string());
    assert_eq!(running["finished_at"], Value::Null);
    let (status, again) =
        body(call(&sim, Method::POST, &path, demo::API, Some(json!({"state": "running", "name": "codesec"}))).await)
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(again["message"].as_str().unwrap().starts_with("Cannot transition status via :run from :running"));
    let (_, done) = body(
        form(
            &sim,
            Method::POST,
            &path,
            demo::API,
            &[("state", "success"), ("context", "codesec"), ("target_url", "https://codesec.example/r/1")],
        )
        .await,
    )
    .await;
    assert_eq!(done["id"], running["id"], "an unfinished status is moved on");
    assert_eq!(done["status"], "success");
    assert_eq!(done["description"], "Scanning");
    assert!(done["finished_at"].is_string());
    let (_, other) =
        body(call(&sim, Method::POST, &path, demo::API, Some(json!({"state": "failed", "name": "codesec"}))).await)
            .await;
    assert_ne!(other["id"], running["id"], "a finished one is replaced");
    let (_, default_name) =
        body(call(&sim, Method::POST, &path, demo::API, Some(json!({"state": "pending"}))).await).await;
    assert_eq!(default_name["name"], "default");

    let list = format!("/api/v4/projects/1/repository/commits/{}/statuses", fx.feature);
    let (status, listed) = body(call(&sim, Method::GET, &list, demo::READONLY, None).await).await;
    assert_eq!(status, StatusCode::OK);
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("codesec", "failed"), ("default", "pending")]);
    let (_, everything) =
        body(call(&sim, Method::GET, &format!("{list}?all=true&sort=desc"), demo::API, None).await).await;
    assert_eq!(everything.as_array().unwrap().len(), 3);
    assert_eq!(everything[0]["name"], "default");

    let kept = sim.statuses(1, &fx.feature);
    let history: Vec<(&str, &str)> = kept.iter().map(|s| (s.name.as_str(), s.state.as_str())).collect();
    assert_eq!(
        history,
        vec![("default", "pending"), ("codesec", "failed"), ("codesec", "success"), ("codesec", "running")]
    );
    assert_eq!(kept[2].id, kept[3].id);
    assert_eq!(kept[2].description, "Scanning");
    assert_eq!(kept[0].description, "");
    assert_eq!(kept[2].target_url.as_deref(), Some("https://codesec.example/r/1"));

    let (status, invalid) =
        body(call(&sim, Method::POST, &path, demo::API, Some(json!({"state": "done"}))).await).await;
    assert_eq!((status, invalid), (StatusCode::BAD_REQUEST, json!({"error": "state does not have a valid value"})));
    let (status, missing) = body(call(&sim, Method::POST, &path, demo::API, Some(json!({}))).await).await;
    assert_eq!((status, missing), (StatusCode::BAD_REQUEST, json!({"error": "state is missing"})));
    let unknown = format!("/api/v4/projects/1/statuses/{}", "0123456789abcdef0123456789abcdef01234567");
    let (status, not_found) =
        body(call(&sim, Method::POST, &unknown, demo::API, Some(json!({"state": "success"}))).await).await;
    assert_eq!((status, not_found), (StatusCode::NOT_FOUND, json!({"message": "404 Commit Not Found"})));
    let (status, scope) =
        body(call(&sim, Method::POST, &path, demo::READONLY, Some(json!({"state": "success"}))).await).await;
    assert_eq!((status, scope["error"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
    let (status, _) =
        body(call(&sim, Method::GET, "/api/v4/projects/1/repository/commits/nope/statuses", demo::API, None).await)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = call(&sim, Method::DELETE, &path, demo::API, None).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------------------------
// Fix merge requests: commits with several actions, merge requests, GraphQL

async fn commit(sim: &RunningSim, token: &str, body: Value) -> (StatusCode, Value) {
    super::merge_requests::body(
        call(sim, Method::POST, "/api/v4/projects/1/repository/commits", token, Some(body)).await,
    )
    .await
}

fn git_show(fx: &Fixture, spec: &str) -> String {
    let out =
        std::process::Command::new("git").arg("--git-dir").arg(fx.repo.path()).args(["show", spec]).output().unwrap();
    assert!(out.status.success(), "git show {spec}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_commit_with_several_actions_then_a_merge_request() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let (status, made) = commit(
        &sim,
        demo::API,
        json!({
            "branch": "codesec/fix-1",
            "start_branch": "main",
            "commit_message": "Remove the leaked token\n\nDetails.",
            "author_name": "Codesec Bot",
            "author_email": "bot@codesec.example",
            "actions": [
                { "action": "update", "file_path": "src/app.py", "content": "fixed\n" },
                { "action": "create", "file_path": "docs/SECURITY.md", "content": "IyBTZWN1cml0eQo=", "encoding": "base64" },
                { "action": "move", "file_path": "gone.txt", "previous_path": "old.txt" },
                { "action": "chmod", "file_path": "README.md", "execute_filemode": true },
            ],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let sha = made["id"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 40);
    assert_eq!(made["short_id"], sha[..8]);
    assert_eq!(made["parent_ids"], json!([fx.main]));
    assert_eq!(made["title"], "Remove the leaked token");
    assert_eq!(made["message"], "Remove the leaked token\n\nDetails.");
    assert_eq!(
        (made["author_name"].as_str(), made["author_email"].as_str()),
        (Some("Codesec Bot"), Some("bot@codesec.example"))
    );
    assert_eq!(made["committer_name"], "Demo User");
    assert_eq!(made["project_id"], 1);
    assert!(made["stats"]["total"].as_u64().unwrap() > 0);
    assert_eq!(git_show(&fx, &format!("{sha}:src/app.py")), "fixed\n");
    assert_eq!(git_show(&fx, &format!("{sha}:docs/SECURITY.md")), "# Security\n");
    assert_eq!(git_show(&fx, &format!("{sha}:gone.txt")), "bye\n");
    let tree = git_show(&fx, &format!("{sha}^{{tree}}"));
    assert!(!tree.contains("old.txt"), "{tree}");

    // The branch exists now: without a start branch the next commit goes on top of it.
    let (status, second) = commit(
        &sim,
        demo::API,
        json!({ "branch": "codesec/fix-1", "commit_message": "More", "actions": [{ "action": "delete", "file_path": "gone.txt" }] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["parent_ids"], json!([sha]));
    let head = second["id"].as_str().unwrap().to_string();

    // The merge request: 201, its head is the branch, a second one conflicts.
    let create = json!({
        "source_branch": "codesec/fix-1", "target_branch": "main", "title": "Fix: leaked token",
        "description": "Found by codesec.", "remove_source_branch": true,
    });
    let (status, mr) =
        body(call(&sim, Method::POST, "/api/v4/projects/1/merge_requests", demo::API, Some(create.clone())).await)
            .await;
    assert_eq!(status, StatusCode::CREATED, "{mr}");
    assert_eq!(mr["iid"], 2, "after the ref-only merge request 1");
    assert_eq!(mr["state"], "opened");
    assert_eq!(mr["author"]["id"], 101);
    assert_eq!(mr["description"], "Found by codesec.");
    assert_eq!(mr["force_remove_source_branch"], true);
    assert_eq!(mr["sha"], head.as_str());
    assert_eq!(mr["diff_refs"], json!({"base_sha": fx.main, "start_sha": fx.main, "head_sha": head}));
    assert_eq!(git_show(&fx, "refs/merge-requests/2/head:src/app.py"), "fixed\n");
    let (status, conflict) =
        body(call(&sim, Method::POST, "/api/v4/projects/1/merge_requests", demo::API, Some(create.clone())).await)
            .await;
    assert_eq!(
        (status, conflict),
        (
            StatusCode::CONFLICT,
            json!({"message": ["Another open merge request already exists for this source branch: !2"]})
        )
    );
    let (_, listed) = body(
        call(
            &sim,
            Method::GET,
            "/api/v4/projects/1/merge_requests?source_branch=codesec/fix-1&state=opened",
            demo::READONLY,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().iter().map(|m| m["iid"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2]);
    assert!(listed[0].get("diff_refs").is_none(), "the list entity is MergeRequestBasic");
    let (_, all) = body(call(&sim, Method::GET, "/api/v4/projects/1/merge_requests", demo::API, None).await).await;
    assert_eq!(all.as_array().unwrap().len(), 2);

    // Update and close; then a new one may be opened.
    let (status, closed) = body(
        call(
            &sim,
            Method::PUT,
            "/api/v4/projects/1/merge_requests/2",
            demo::API,
            Some(json!({"title": "Renamed", "state_event": "close"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((closed["title"].as_str(), closed["state"].as_str()), (Some("Renamed"), Some("closed")));
    let (status, bad) = body(
        call(
            &sim,
            Method::PUT,
            "/api/v4/projects/1/merge_requests/2",
            demo::API,
            Some(json!({"state_event": "merge"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, bad), (StatusCode::BAD_REQUEST, json!({"error": "state_event does not have a valid value"})));
    let (status, again) =
        body(call(&sim, Method::POST, "/api/v4/projects/1/merge_requests", demo::API, Some(create)).await).await;
    assert_eq!((status, again["iid"].as_u64()), (StatusCode::CREATED, Some(3)));
    let (status, reopen) = body(
        call(
            &sim,
            Method::PUT,
            "/api/v4/projects/1/merge_requests/2",
            demo::API,
            Some(json!({"state_event": "reopen"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reopen}");
    assert_eq!(
        sim.merge_requests(1).iter().map(|m| (m.iid, m.state.as_str())).collect::<Vec<_>>(),
        vec![(1, "opened"), (2, "closed"), (3, "opened")]
    );

    let (status, missing) = body(
        call(&sim, Method::POST, "/api/v4/projects/1/merge_requests", demo::API, Some(json!({"title": "x"}))).await,
    )
    .await;
    assert_eq!(
        (status, missing),
        (StatusCode::BAD_REQUEST, json!({"error": "source_branch is missing, target_branch is missing"}))
    );
    let (status, nope) = body(
        call(
            &sim,
            Method::POST,
            "/api/v4/projects/1/merge_requests",
            demo::API,
            Some(json!({"title": "x", "source_branch": "nope", "target_branch": "main"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, nope), (StatusCode::BAD_REQUEST, json!({"message": {"source_branch": ["does not exist"]}})));
    let (status, scope) = body(
        call(
            &sim,
            Method::POST,
            "/api/v4/projects/1/merge_requests",
            demo::READONLY,
            Some(json!({"title": "x", "source_branch": "feature", "target_branch": "main"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, scope["error"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
}

#[tokio::test]
async fn commit_errors_are_gitlabs() {
    let fx = fixture();
    let sim = sim_for(&fx).await;
    let one = |branch: &str, start: Option<&str>, action: Value| {
        let mut body = json!({ "branch": branch, "commit_message": "m", "actions": [action] });
        if let Some(start) = start {
            body["start_branch"] = json!(start);
        }
        body
    };
    let cases = [
        (
            one("fix", Some("main"), json!({"action": "update", "file_path": "missing.txt", "content": "x"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "A file with this name doesn't exist"}),
        ),
        (
            one("fix", Some("main"), json!({"action": "create", "file_path": "README.md", "content": "x"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "A file with this name already exists"}),
        ),
        (
            one("fix", Some("main"), json!({"action": "create", "file_path": "src", "content": "x"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "A directory with this name already exists"}),
        ),
        (
            one("fix", Some("main"), json!({"action": "delete", "file_path": "../etc/passwd"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "Path cannot include directory traversal"}),
        ),
        (
            one("main", None, json!({"action": "create", "file_path": "x", "content": "x"})),
            StatusCode::FORBIDDEN,
            json!({"message": "403 Forbidden - You are not allowed to push into this branch"}),
        ),
        (
            one("brand-new", None, json!({"action": "create", "file_path": "x", "content": "x"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "You can only create or edit files when you are on a branch"}),
        ),
        (
            one("feature", Some("main"), json!({"action": "create", "file_path": "x", "content": "x"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "A branch called 'feature' already exists. Switch to that branch in order to make changes"}),
        ),
        (
            one("fix", Some("main"), json!({"action": "rename", "file_path": "x"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "400 Bad request - actions[0][action] must be one of: create, update, move, delete, chmod"}),
        ),
        (
            one("fix", Some("main"), json!({"action": "update", "file_path": "README.md"})),
            StatusCode::BAD_REQUEST,
            json!({"message": "400 Bad request - actions[0][content] is required for update action"}),
        ),
        (
            one(
                "fix",
                Some("main"),
                json!({"action": "update", "file_path": "README.md", "content": "x", "last_commit_id": fx.base}),
            ),
            StatusCode::BAD_REQUEST,
            json!({"message": "The file has changed since you started editing it: README.md"}),
        ),
        (
            json!({ "branch": "fix", "start_branch": "main", "commit_message": "m", "actions": [] }),
            StatusCode::BAD_REQUEST,
            json!({"message": "400 Bad request - actions is required"}),
        ),
    ];
    for (request, status, answer) in cases {
        assert_eq!(commit(&sim, demo::API, request.clone()).await, (status, answer), "{request}");
    }
    // The right last_commit_id passes; `force` replaces an existing branch from the start.
    let ok = one(
        "fix",
        Some("main"),
        json!({"action": "update", "file_path": "README.md", "content": "x", "last_commit_id": fx.main}),
    );
    assert_eq!(commit(&sim, demo::API, ok).await.0, StatusCode::CREATED);
    let mut forced = one("feature", Some("main"), json!({"action": "create", "file_path": "y", "content": "y"}));
    forced["force"] = json!(true);
    let (status, made) = commit(&sim, demo::API, forced).await;
    assert_eq!((status, made["parent_ids"].clone()), (StatusCode::CREATED, json!([fx.main])));
    let (status, scope) =
        commit(&sim, demo::READONLY, one("fix", None, json!({"action": "delete", "file_path": "x"}))).await;
    assert_eq!((status, scope["error"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
}

async fn graphql(sim: &RunningSim, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request =
        client(sim).post(format!("{}/api/graphql", sim.base_url())).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    super::merge_requests::body(request.body(body.to_string()).send().await.unwrap()).await
}

const CREATE: &str = "mutation($input: VulnerabilityCreateInput!) {
  vulnerabilityCreate(input: $input) { vulnerability { id state severity vulnerabilityPath } errors }
}";

fn vulnerability_input(project: u64, identifiers: &Value) -> Value {
    json!({
        "project": format!("gid://gitlab/Project/{project}"),
        "name": "Leaked GitLab token",
        "description": "A personal access token in config/app.rs",
        "scanner": { "id": "codesec", "name": "Codesec", "vendor": { "name": "Codesec" } },
        "identifiers": identifiers.clone(),
        "severity": "HIGH",
    })
}

#[tokio::test]
async fn vulnerability_create_over_graphql() {
    let sim = super::sim().await;
    let ids = json!([{ "name": "CWE-798", "url": "https://cwe.mitre.org/data/definitions/798.html" }]);
    let (status, answer) =
        graphql(&sim, Some(demo::API), json!({"query": CREATE, "variables": {"input": vulnerability_input(1, &ids)}}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let created = &answer["data"]["vulnerabilityCreate"];
    assert_eq!(created["errors"], json!([]));
    assert_eq!(created["vulnerability"]["id"], "gid://gitlab/Vulnerability/1");
    assert_eq!(created["vulnerability"]["state"], "DETECTED");
    assert_eq!(created["vulnerability"]["severity"], "HIGH");
    assert_eq!(created["vulnerability"]["vulnerabilityPath"], "/demo/backend/-/security/vulnerabilities/1");
    let kept = sim.vulnerabilities(1);
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].name.as_str(), kept[0].author_id, kept[0].identifiers.len()), ("Leaked GitLab token", 101, 1));

    // Inline input.
    let inline = r#"mutation { vulnerabilityCreate(input: {project: "gid://gitlab/Project/1", name: "n", description: "d",
        scanner: {id: "s", name: "S", vendor: {name: "V"}}, identifiers: [{name: "CWE-1", url: "https://x"}], state: CONFIRMED}) {
        vulnerability { id state } errors } }"#;
    let (_, answer) = graphql(&sim, Some(demo::API), json!({ "query": inline })).await;
    assert_eq!(answer["data"]["vulnerabilityCreate"]["vulnerability"]["state"], "CONFIRMED");

    // An empty identifier list: GitLab's 500.
    let (status, _) = graphql(
        &sim,
        Some(demo::API),
        json!({"query": CREATE, "variables": {"input": vulnerability_input(1, &json!([]))}}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    // Without Ultimate, with a read_api token, without a token, on an unknown project: the
    // resource error, data null.
    sim.set_ultimate(2, false);
    for (token, project) in [(Some(demo::API), 2), (Some(demo::READONLY), 1), (None, 1), (Some(demo::API), 99)] {
        let (status, answer) =
            graphql(&sim, token, json!({"query": CREATE, "variables": {"input": vulnerability_input(project, &ids)}}))
                .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["data"], json!({"vulnerabilityCreate": null}), "{token:?} {project}");
        assert_eq!(
            answer["errors"][0]["message"],
            "The resource that you are attempting to access does not exist or you don't have permission to perform this action"
        );
        assert_eq!(answer["errors"][0]["path"], json!(["vulnerabilityCreate"]));
        assert_eq!(answer["errors"][0]["locations"], json!([{"line": 2, "column": 3}]));
    }
    assert_eq!(sim.vulnerabilities(1).len(), 2);
    assert!(sim.vulnerabilities(2).is_empty());
    let (status, invalid) = graphql(&sim, Some(demo::REVOKED), json!({"query": CREATE})).await;
    assert_eq!((status, invalid), (StatusCode::UNAUTHORIZED, json!({"errors": [{"message": "Invalid token"}]})));
}

//! The report into merge requests through the local stack and the simulator's merge request,
//! notes, discussions and commit status APIs: one summary note kept current, one inline thread
//! per new finding on an added line (resolved when fixed), the commit status; nothing written
//! twice or by a read-only token; untrusted text inert.

use std::time::Duration;

use gitlab_sim::{TestRepo, Tree};
use serde_json::{Value, json};

use crate::scan_flows::{Scratch, connect_and_track_as, mr_scans, sqs_event, wait_for_scan};
use crate::support::{Env, demo, env};

const LEAK: &str = "const TOKEN: &str = \"glpat-SIMfake0report0Tok77\";\n";

fn base_tree() -> Tree {
    Tree::new().file("README.md", "# app\n").file("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n")
}

/// GitLab's writes (anything but GET) to merge request notes, discussions and statuses.
fn writes(env: &Env) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && (r.path.contains("/merge_requests/") || r.path.contains("/statuses/")))
        .count()
}

fn request(team: &str, id: &str, iid: u64, sha: &str, at: &str, delivery: &str) -> Value {
    json!({
        "type": "scan_requested", "version": 1, "team_id": team, "integration_id": id, "project_id": 1,
        "target": { "kind": "merge_request", "iid": iid, "target_branch": "main" },
        "head_sha": sha, "trigger": "merge_request", "delivery_id": delivery, "requested_at": at,
    })
}

/// A repository whose `main` is clean and whose second commit leaks a token in `config/app.rs`.
fn leaky_repo(scratch: &Scratch) -> (TestRepo, String, String) {
    let mut repo = TestRepo::init(scratch.0.join("backend.git")).expect("repo");
    let base = repo.commit(&base_tree(), "base", &[]).expect("commit");
    repo.branch("main", &base).expect("branch");
    let leak = repo.commit(&base_tree().file("config/app.rs", LEAK), "leak", &[&base]).expect("commit");
    (repo, base, leak)
}

/// Hands one scan request to the worker, as its queue would.
async fn handle(env: &Env, message: Value) {
    let out = scan_worker::process_batch(&env.stack.scan_deps, sqs_event(&[("m", message)])).await;
    assert!(out.batch_item_failures.is_empty(), "{:?}", out.batch_item_failures);
}

async fn scan_of(env: &Env, team: &str, id: &str, sha: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let scans = mr_scans(env, team, id).await;
        if let Some(done) =
            scans.iter().find(|s| s["sha"] == sha && s["state"] == "succeeded" && !s["report"].is_null())
        {
            return wait_for_scan(env, team, id, done["scan_id"].as_str().expect("id")).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reported scan of {sha}: {scans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn raise(env: &Env, event: Value) {
    // Tracking queued the hook's creation; GitLab can only deliver once it exists.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.sim.hooks().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the managed hook was never created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sim = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(env.sim.ca_pem.as_bytes()).expect("ca")])
        .build()
        .expect("client");
    let raised = sim
        .post(format!("{}/-/sim/projects/1/events", env.sim.base_url()))
        .body(event.to_string())
        .send()
        .await
        .expect("sim answers");
    assert!(raised.status().is_success());
    let answer: Value = serde_json::from_slice(&raised.bytes().await.expect("body")).expect("json");
    assert_eq!(answer["deliveries"][0]["status"], 200, "{answer}");
}

fn summaries(env: &Env, iid: u64) -> Vec<gitlab_sim::SimNote> {
    env.sim.notes(1, iid).into_iter().filter(|n| n.body.starts_with("<!-- gitlab-connector:summary ")).collect()
}

#[tokio::test]
async fn a_merge_request_gets_one_summary_one_thread_and_a_status_kept_current() {
    let scratch = Scratch::new("report");
    let (mut repo, _, leak) = leaky_repo(&scratch);
    repo.branch("feature", &leak).expect("branch");
    repo.merge_request(1, &leak).expect("mr ref");
    let env = env("report_mr").with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track_as(&env, "team-a", 1, demo::API).await;

    // The merge request opens with a leaked token.
    raise(&env, json!({ "kind": "merge_request", "iid": 1, "action": "open" })).await;
    let first = scan_of(&env, "team-a", &id, &leak).await;
    assert_eq!(first["report"]["state"], "written", "{first}");
    let notes = summaries(&env, 1);
    assert_eq!(notes.len(), 1, "one summary note");
    let summary = &notes[0];
    assert_eq!(summary.author_id, 101, "written as the integration's user");
    assert!(summary.body.contains("1 open finding introduced"), "{}", summary.body);
    assert!(summary.body.contains(&format!("/-/blob/{leak}/config/app.rs#L1")), "{}", summary.body);
    assert!(!summary.body.contains("glpat-SIMfake0report"), "never the secret");
    let threads: Vec<_> = env.sim.discussions(1, 1).into_iter().filter(|d| !d.individual_note).collect();
    assert_eq!(threads.len(), 1, "one inline thread: {threads:?}");
    let thread_note = &threads[0].notes[0];
    assert_eq!(thread_note.position.as_ref().and_then(|p| p["new_line"].as_u64()), Some(1));
    assert_eq!(thread_note.position.as_ref().and_then(|p| p["new_path"].as_str()), Some("config/app.rs"));
    assert!(!thread_note.body.contains("glpat-SIMfake0report"));
    let statuses = env.sim.statuses(1, &leak);
    assert_eq!(statuses[0].name, "gitlab-connector/secrets");
    assert_eq!((statuses[0].state.as_str(), statuses[0].description.as_str()), ("failed", "1 open finding introduced"));
    assert!(statuses.iter().any(|s| s.state == "pending"), "pending first: {statuses:?}");

    // A push removes it: the same note is edited, the thread resolved, the status success.
    let fix = repo.commit(&base_tree(), "remove the token", &[&leak]).expect("commit");
    repo.branch("feature", &fix).expect("branch");
    repo.merge_request(1, &fix).expect("mr ref");
    raise(&env, json!({ "kind": "merge_request", "iid": 1, "action": "update", "oldrev": leak })).await;
    let second = scan_of(&env, "team-a", &id, &fix).await;
    assert_eq!(second["report"]["state"], "written", "{second}");
    let notes = summaries(&env, 1);
    assert_eq!(notes.len(), 1, "no new note");
    assert_eq!(notes[0].id, summary.id);
    assert!(notes[0].body.contains("no open findings introduced"), "{}", notes[0].body);
    let thread = env.sim.discussions(1, 1).into_iter().find(|d| d.id == threads[0].id).expect("thread");
    assert!(thread.resolved, "{thread:?}");
    assert!(thread.notes.iter().any(|n| n.body.starts_with("Fixed in commit")), "{thread:?}");
    let statuses = env.sim.statuses(1, &fix);
    assert_eq!(
        (statuses[0].state.as_str(), statuses[0].description.as_str()),
        ("success", "No open findings introduced")
    );

    // The same commit delivered again: nothing written to GitLab.
    let before = writes(&env);
    handle(&env, request("team-a", &id, 1, &fix, "2030-01-01T00:00:00Z", "d-again")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(writes(&env), before, "a redelivery writes nothing");

    // Two heads of another merge request handled at the same time: still one summary note.
    repo.merge_request(2, &fix).expect("mr ref");
    let deps = env.stack.scan_deps.clone();
    let (a, b) = tokio::join!(
        scan_worker::process_batch(
            &deps,
            sqs_event(&[("r1", request("team-a", &id, 2, &leak, "2030-01-01T00:00:10Z", "d-r1"))])
        ),
        scan_worker::process_batch(
            &deps,
            sqs_event(&[("r2", request("team-a", &id, 2, &fix, "2030-01-01T00:00:11Z", "d-r2"))])
        ),
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    assert_eq!(summaries(&env, 2).len(), 1, "{:?}", env.sim.notes(1, 2));
}

#[tokio::test]
async fn read_only_tokens_write_nothing_and_a_refused_write_turns_comments_off() {
    let scratch = Scratch::new("report-ro");
    let (repo, _, leak) = leaky_repo(&scratch);
    repo.merge_request(1, &leak).expect("mr ref");
    let env = env("report_ro").with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));

    // read_api + read_repository: scanned, nothing written.
    // (Its hooks are manual, so the request is handed to the worker directly.)
    let id = connect_and_track_as(&env, "team-a", 1, demo::READONLY).await;
    handle(&env, request("team-a", &id, 1, &leak, "2030-01-01T00:00:00Z", "d-ro")).await;
    let scan = scan_of(&env, "team-a", &id, &leak).await;
    assert_eq!(scan["report"], json!({ "state": "skipped", "reason": "read_only", "writes": 0 }), "{scan}");
    assert_eq!(writes(&env), 0);

    // An api token that GitLab then refuses (its scopes were narrowed): one refusal, the
    // capability turned off and shown, and the next scan writes nothing.
    let other = connect_and_track_as(&env, "team-b", 1, demo::API).await;
    let mut narrowed = gitlab_sim::SimConfig::default().tokens.into_iter().find(|t| t.token == demo::API).expect("t");
    narrowed.scopes = vec!["read_api".into(), "read_repository".into()];
    env.sim.upsert_token(narrowed);
    handle(&env, request("team-b", &other, 1, &leak, "2030-01-01T00:00:00Z", "d-n1")).await;
    let refused = scan_of(&env, "team-b", &other, &leak).await;
    assert_eq!(refused["report"]["reason"], "insufficient_scope", "{refused}");
    let integration = env.get("team-b", &format!("/integrations/gitlab/{other}")).await;
    assert_eq!(integration.body["capabilities"]["comment"], false, "{}", integration.raw);
    assert!(
        integration.body["warnings"].as_array().expect("warnings").iter().any(|w| w["code"] == "comment_refused"),
        "{}",
        integration.raw
    );
    let attempts = writes(&env);
    assert!(attempts >= 1);
    repo.merge_request(3, &leak).expect("mr ref");
    handle(&env, request("team-b", &other, 3, &leak, "2030-01-01T00:00:05Z", "d-n2")).await;
    assert_eq!(writes(&env), attempts, "no retry after the refusal");
}

/// The body with every inline code span removed.
fn outside_code(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let fence = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + fence..];
        match after.find(&"`".repeat(fence)) {
            Some(end) => rest = &after[end + fence..],
            None => {
                rest = after;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn hostile_paths_and_scanner_messages_are_rendered_inert() {
    let scratch = Scratch::new("report-inert");
    let mut repo = TestRepo::init(scratch.0.join("backend.git")).expect("repo");
    let base = repo.commit(&base_tree(), "base", &[]).expect("commit");
    repo.branch("main", &base).expect("branch");
    let hostile_path = "docs/@all <img src=x onerror=alert(1)> ```/approve.rs";
    let leak = repo.commit(&base_tree().file(hostile_path, LEAK), "leak", &[&base]).expect("commit");
    repo.merge_request(1, &leak).expect("mr ref");
    // A SARIF scanner whose message carries a quick action on its own line, a mention, HTML and
    // a fence.
    let script = scratch.0.join("hostile-scanner.sh");
    let sarif = json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "hostile"}},
            "results": [{
                "ruleId": "x\n/approve",
                "level": "error",
                "message": {"text": "look\n/approve\n/merge\n@all <b>bold</b> ```\n/close\n``` [x](javascript:alert(1))"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/main.rs"}, "region": {"startLine": 2}}}]
            }]
        }]
    });
    std::fs::write(&script, format!("#!/bin/sh\ncat <<'SARIF'\n{sarif}\nSARIF\n")).expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    let scanners = json!([{ "name": "hostile", "command": [script.display().to_string()] }]).to_string();
    let env = env("report_inert").var("SCANNERS", &scanners).with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track_as(&env, "team-a", 1, demo::API).await;
    raise(&env, json!({ "kind": "merge_request", "iid": 1, "action": "open" })).await;
    let scan = scan_of(&env, "team-a", &id, &leak).await;
    assert_eq!(scan["report"]["state"], "written", "{scan}");
    let bodies: Vec<String> = env.sim.notes(1, 1).into_iter().map(|n| n.body).collect();
    assert!(bodies.len() >= 2, "the summary and the thread on the hostile path: {bodies:?}");
    for body in &bodies {
        for line in body.lines() {
            assert!(!line.trim_start().starts_with('/'), "a quick action line: {line:?}");
        }
        let plain = outside_code(body);
        for bad in ["@all", "<b>", "<img", "javascript:", "```"] {
            assert!(!plain.contains(bad), "{bad} outside a code span in {body}");
        }
    }
}

#[tokio::test]
async fn report_settings_switch_parts_off_per_integration() {
    let scratch = Scratch::new("report-settings");
    let (repo, _, leak) = leaky_repo(&scratch);
    repo.merge_request(1, &leak).expect("mr ref");
    let env = env("report_settings").with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track_as(&env, "team-a", 1, demo::API).await;
    let path = format!("/integrations/gitlab/{id}");
    let shown = env.get("team-a", &path).await;
    assert_eq!(
        shown.body["report"],
        json!({
            "comment": true, "inline_threads": true, "commit_status": true, "fix_merge_requests": true,
            "vulnerability_export": false,
        })
    );

    let changed = env
        .request(
            "PATCH",
            Some("team-a"),
            &path,
            Some(("application/json", br#"{"report": {"comment": false, "inline_threads": false}}"#.to_vec())),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.raw);
    assert_eq!(
        changed.body["report"],
        json!({
            "comment": false, "inline_threads": false, "commit_status": true, "fix_merge_requests": true,
            "vulnerability_export": false,
        })
    );
    let unknown = env
        .request(
            "PATCH",
            Some("team-a"),
            &path,
            Some(("application/json", br#"{"report": {"emails": true}}"#.to_vec())),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (400, "invalid_request"), "{}", unknown.raw);
    let foreign = env
        .request(
            "PATCH",
            Some("team-b"),
            &path,
            Some(("application/json", br#"{"report": {"comment": true}}"#.to_vec())),
        )
        .await;
    assert_eq!(foreign.status, 404);

    // Only the commit status is written.
    handle(&env, request("team-a", &id, 1, &leak, "2030-01-01T00:00:00Z", "d-s1")).await;
    let scan = scan_of(&env, "team-a", &id, &leak).await;
    assert_eq!(scan["report"]["state"], "written", "{scan}");
    assert!(env.sim.notes(1, 1).is_empty(), "no note, no thread");
    let statuses = env.sim.statuses(1, &leak);
    assert_eq!(statuses[0].state, "failed", "{statuses:?}");
}

/// The tip commit of `branch` in a bare repository and a file's content there.
fn git_show(repo: &std::path::Path, what: &str) -> Option<String> {
    let out = std::process::Command::new("git").arg("--git-dir").arg(repo).args(["show", what]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn a_sarif_fix_opens_one_merge_request_updated_then_closed() {
    let scratch = Scratch::new("report-fix");
    let (mut repo, _, leak) = leaky_repo(&scratch);
    repo.branch("feature", &leak).expect("branch");
    repo.merge_request(1, &leak).expect("mr ref");
    // A scanner that, while the token is in config/app.rs, proposes to read it from the
    // environment instead.
    let script = scratch.0.join("fixing-scanner.sh");
    let sarif = json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "fixer"}},
            "results": [{
                "ruleId": "hardcoded-token",
                "level": "error",
                "message": {"text": "a token in source"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "config/app.rs"}, "region": {"startLine": 1}}}],
                "fixes": [{"artifactChanges": [{"artifactLocation": {"uri": "config/app.rs"}, "replacements": [
                    {"deletedRegion": {"startLine": 1}, "insertedContent": {"text": "const TOKEN: &str = env!(\"APP_TOKEN\");\n"}}
                ]}]}]
            }]
        }]
    });
    let empty = json!({ "version": "2.1.0", "runs": [{ "tool": {"driver": {"name": "fixer"}}, "results": [] }] });
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif grep -q glpat- config/app.rs 2>/dev/null; then\ncat <<'SARIF'\n{sarif}\nSARIF\nelse\ncat <<'SARIF'\n{empty}\nSARIF\nfi\n"
        ),
    )
    .expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    let scanners = json!([{ "name": "fixer", "command": [script.display().to_string()] }]).to_string();
    let env = env("report_fix").var("SCANNERS", &scanners).with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    assert!(env.sim.open_merge_request(1, 1, "feature", "main", "Add config"));
    let id = connect_and_track_as(&env, "team-a", 1, demo::API).await;
    let fix_mrs = |env: &Env| -> Vec<gitlab_sim::SimMergeRequest> {
        env.sim.merge_requests(1).into_iter().filter(|m| m.source_branch.starts_with("gitlab-connector/fix-")).collect()
    };

    handle(&env, request("team-a", &id, 1, &leak, "2030-01-01T00:00:00Z", "d-f1")).await;
    let first = scan_of(&env, "team-a", &id, &leak).await;
    assert_eq!(first["report"]["state"], "written", "{first}");
    let opened = fix_mrs(&env);
    assert_eq!(opened.len(), 1, "one fix merge request: {opened:?}");
    let fix = &opened[0];
    assert_eq!((fix.state.as_str(), fix.target_branch.as_deref()), ("opened", Some("feature")));
    assert!(fix.title.contains("1 proposed fix"), "{}", fix.title);
    let fixed = git_show(repo.path(), &format!("{}:config/app.rs", fix.source_branch)).expect("file on the fix branch");
    assert_eq!(fixed, "const TOKEN: &str = env!(\"APP_TOKEN\");\n");
    assert_eq!(git_show(repo.path(), "main:README.md").as_deref(), Some("# app\n"), "the default branch is untouched");

    // A new head with the finding still there: the same merge request, its branch moved onto it.
    let more =
        repo.commit(&base_tree().file("config/app.rs", LEAK).file("NOTES.md", "x\n"), "more", &[&leak]).expect("c");
    repo.branch("feature", &more).expect("branch");
    repo.merge_request(1, &more).expect("mr ref");
    handle(&env, request("team-a", &id, 1, &more, "2030-01-01T00:00:10Z", "d-f2")).await;
    scan_of(&env, "team-a", &id, &more).await;
    let updated = fix_mrs(&env);
    assert_eq!(updated.len(), 1, "updated, not duplicated: {updated:?}");
    assert_eq!(updated[0].iid, fix.iid);
    assert_eq!(git_show(repo.path(), &format!("{}:NOTES.md", fix.source_branch)).as_deref(), Some("x\n"));

    // The token removed by hand: the fix merge request is closed.
    let gone = repo.commit(&base_tree().file("NOTES.md", "x\n"), "remove", &[&more]).expect("commit");
    repo.merge_request(1, &gone).expect("mr ref");
    handle(&env, request("team-a", &id, 1, &gone, "2030-01-01T00:00:20Z", "d-f3")).await;
    scan_of(&env, "team-a", &id, &gone).await;
    let closed = fix_mrs(&env);
    assert_eq!((closed.len(), closed[0].state.as_str()), (1, "closed"), "{closed:?}");
}

async fn manual_scan(env: &Env, id: &str) -> Value {
    let started = env.post("team-a", &format!("/integrations/gitlab/{id}/repositories/1/scans"), &json!({})).await;
    assert_eq!(started.status, 202, "{}", started.raw);
    let scan_id = started.body["scan_id"].as_str().expect("scan_id");
    // The results are stored first, the report after them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let scan = wait_for_scan(env, "team-a", id, scan_id).await;
        if !scan["report"].is_null() {
            return scan;
        }
        assert!(tokio::time::Instant::now() < deadline, "no report: {scan}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn new_default_branch_findings_are_exported_once_and_a_refusal_is_only_recorded() {
    let scratch = Scratch::new("report-export");
    let mut repo = TestRepo::init(scratch.0.join("backend.git")).expect("repo");
    let first = repo.commit(&base_tree().file("config/app.rs", LEAK), "leak", &[]).expect("commit");
    repo.branch("main", &first).expect("branch");
    let env = env("report_export").with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track_as(&env, "team-a", 1, demo::API).await;
    let on = env
        .request(
            "PATCH",
            Some("team-a"),
            &format!("/integrations/gitlab/{id}"),
            Some(("application/json", br#"{"report": {"vulnerability_export": true}}"#.to_vec())),
        )
        .await;
    assert_eq!((on.status, &on.body["report"]["vulnerability_export"]), (200, &json!(true)), "{}", on.raw);

    let scan = manual_scan(&env, &id).await;
    assert_eq!(scan["report"]["vulnerabilities_exported"], 1, "{scan}");
    let fingerprint = scan["findings"][0]["fingerprint"].as_str().expect("fingerprint").to_owned();
    let exported = env.sim.vulnerabilities(1);
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0].identifiers[0]["name"], format!("gitlab-connector:{fingerprint}"));
    assert_eq!(exported[0].severity, "CRITICAL");
    assert!(!format!("{:?}", exported[0]).contains("glpat-SIMfake0report"), "no secret in the export");

    // Another credential on the default branch, and the project without Ultimate: the export
    // is refused and recorded, the rest of the report still written, and the first finding is
    // not exported twice.
    let second = repo
        .commit(
            &base_tree()
                .file("config/app.rs", LEAK)
                .file("config/other.rs", "const T: &str = \"glpat-SIMfake0export0Tok55\";\n"),
            "another",
            &[&first],
        )
        .expect("commit");
    repo.branch("main", &second).expect("branch");
    env.sim.set_ultimate(1, false);
    let refused = manual_scan(&env, &id).await;
    assert_eq!(refused["sha"], second.as_str());
    assert_eq!(refused["report"]["export_error"], "not_available", "{refused}");
    assert_eq!(refused["report"]["state"], "written", "the status still went out: {refused}");
    assert_eq!(env.sim.statuses(1, &second)[0].state, "failed");
    assert_eq!(env.sim.vulnerabilities(1).len(), 1);
}

#[tokio::test]
async fn a_dismissed_finding_resolves_its_thread_for_good() {
    let scratch = Scratch::new("report-dismiss");
    let (mut repo, _, leak) = leaky_repo(&scratch);
    repo.merge_request(1, &leak).expect("mr ref");
    let env = env("report_dismiss").with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track_as(&env, "team-a", 1, demo::API).await;
    let deps = env.stack.scan_deps.clone();
    let run = |sha: String, at: &'static str, delivery: &'static str| {
        let deps = deps.clone();
        let message = request("team-a", &id, 1, &sha, at, delivery);
        async move {
            let out = scan_worker::process_batch(&deps, sqs_event(&[(delivery, message)])).await;
            assert!(out.batch_item_failures.is_empty());
        }
    };
    run(leak.clone(), "2030-01-01T00:00:00Z", "d1").await;
    let first = scan_of(&env, "team-a", &id, &leak).await;
    let threads: Vec<_> = env.sim.discussions(1, 1).into_iter().filter(|d| !d.individual_note).collect();
    assert_eq!(threads.len(), 1);
    let fingerprint = first["findings"][0]["fingerprint"].as_str().expect("fingerprint").to_owned();
    let dismissed = env
        .request(
            "PATCH",
            Some("team-a"),
            &format!("/integrations/gitlab/{id}/findings/{fingerprint}"),
            Some(("application/json", br#"{"triage": "dismissed"}"#.to_vec())),
        )
        .await;
    assert_eq!(dismissed.status, 200, "{}", dismissed.raw);

    // The credential is still there on the next head: the thread is answered and resolved.
    let more =
        repo.commit(&base_tree().file("config/app.rs", LEAK).file("NOTES.md", "x\n"), "more", &[&leak]).expect("c");
    repo.merge_request(1, &more).expect("mr ref");
    run(more.clone(), "2030-01-01T00:00:10Z", "d2").await;
    scan_of(&env, "team-a", &id, &more).await;
    let thread = env.sim.discussions(1, 1).into_iter().find(|d| d.id == threads[0].id).expect("thread");
    assert!(thread.resolved, "{thread:?}");
    assert!(thread.notes.iter().any(|n| n.body.starts_with("Dismissed in gitlab-connector")), "{thread:?}");
    assert_eq!(env.sim.statuses(1, &more)[0].state, "success", "a dismissed finding fails nothing");

    // And it stays so: a later head writes nothing more to that thread, and opens no new one.
    let notes_before = thread.notes.len();
    let later =
        repo.commit(&base_tree().file("config/app.rs", LEAK).file("NOTES.md", "y\n"), "later", &[&more]).expect("c");
    repo.merge_request(1, &later).expect("mr ref");
    run(later.clone(), "2030-01-01T00:00:20Z", "d3").await;
    scan_of(&env, "team-a", &id, &later).await;
    let all: Vec<_> = env.sim.discussions(1, 1).into_iter().filter(|d| !d.individual_note).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].resolved);
    assert_eq!(all[0].notes.len(), notes_before);
}

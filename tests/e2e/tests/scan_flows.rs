//! Scans through the local stack: the api queues a scan, the scan worker fetches the commit from
//! the simulator's Git smart HTTP with gitoxide through the pinned client, scans it and stores
//! findings; a second scan classifies them; hostile repositories; SARIF scanners; tenancy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitlab_sim::{PLANTED_SECRETS, TestRepo, Tree, planted_secrets};
use serde_json::{Value, json};

use crate::support::{Env, demo, env};
use crate::sync_flows::wait_for_run;

/// A scratch directory for one test, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("e2e-scan-{name}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
}

/// Connects the demo token, waits for the first sync and tracks `project_id`.
async fn connect_and_track(env: &Env, team: &str, project_id: u64) -> String {
    connect_and_track_with_secret(env, team, project_id).await.0
}

/// Like [`connect_and_track`], also returning the webhook secret.
async fn connect_and_track_with_secret(env: &Env, team: &str, project_id: u64) -> (String, String) {
    connect_and_track_with(env, team, project_id, demo::API).await
}

/// Connects `token`, waits for the first sync and tracks `project_id`; returns the integration id.
pub(crate) async fn connect_and_track_as(env: &Env, team: &str, project_id: u64, token: &str) -> String {
    connect_and_track_with(env, team, project_id, token).await.0
}

async fn connect_and_track_with(env: &Env, team: &str, project_id: u64, token: &str) -> (String, String) {
    let created = env.connect(team, token).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["webhook"]["secret"].as_str().expect("secret").to_owned();
    wait_for_run(env, team, &id, None).await;
    let tracked = env
        .request(
            "PATCH",
            Some(team),
            &format!("/integrations/gitlab/{id}/repositories"),
            Some(("application/json", json!({ "track": [project_id] }).to_string().into_bytes())),
        )
        .await;
    assert_eq!(tracked.status, 200, "{}", tracked.raw);
    (id, secret)
}

/// Starts a scan of `project_id` and waits until it is final; returns the scan with all its
/// findings (every page).
async fn scan_and_wait(env: &Env, team: &str, id: &str, project_id: u64, body: Value) -> Value {
    let started = env.post(team, &format!("/integrations/gitlab/{id}/repositories/{project_id}/scans"), &body).await;
    assert_eq!(started.status, 202, "{}", started.raw);
    let scan_id = started.body["scan_id"].as_str().expect("scan_id").to_owned();
    wait_for_scan(env, team, id, &scan_id).await
}

pub(crate) async fn wait_for_scan(env: &Env, team: &str, id: &str, scan_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let reply = env.get(team, &format!("/integrations/gitlab/{id}/scans/{scan_id}?limit=3")).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        let state = reply.body["state"].as_str().unwrap_or_default().to_owned();
        if !matches!(state.as_str(), "queued" | "running") {
            let mut scan = reply.body.clone();
            let mut findings = scan["findings"].as_array().cloned().unwrap_or_default();
            let mut cursor = scan["next_cursor"].as_str().map(str::to_owned);
            // Pages of three: the paging itself is under test.
            while let Some(c) = cursor {
                let page =
                    env.get(team, &format!("/integrations/gitlab/{id}/scans/{scan_id}?limit=3&cursor={c}")).await;
                assert_eq!(page.status, 200, "{}", page.raw);
                findings.extend(page.body["findings"].as_array().cloned().unwrap_or_default());
                cursor = page.body["next_cursor"].as_str().map(str::to_owned);
            }
            scan["findings"] = Value::Array(findings);
            return scan;
        }
        assert!(tokio::time::Instant::now() < deadline, "scan {scan_id} still {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// A SARIF scanner script: records its environment and every process's arguments next to it,
/// then reports a result with a fix on `src/main.rs` line 2, one without on `README.md`, and one
/// outside the checkout.
fn sarif_scanner(dir: &Path) -> PathBuf {
    let script = dir.join("fake-sarif-scanner.sh");
    let env_out = dir.join("scanner-env.txt");
    let sarif = json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "fake", "rules": [{"id": "demo.println", "properties": {"security-severity": "4.0"}}]}},
            "results": [{
                "ruleId": "demo.println",
                "level": "warning",
                "message": {"text": "println! in production code"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/main.rs"}, "region": {"startLine": 2}}}],
                "fixes": [{"artifactChanges": [{"artifactLocation": {"uri": "src/main.rs"}, "replacements": [
                    {"deletedRegion": {"startLine": 2}, "insertedContent": {"text": "    // removed\n"}}
                ]}]}]
            }, {
                "ruleId": "demo.readme",
                "level": "note",
                "message": {"text": "README without a security section"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "README.md"}, "region": {"startLine": 1}}}]
            }, {
                "ruleId": "demo.outside",
                "message": {"text": "a path outside the checkout is dropped"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "../../etc/passwd"}, "region": {"startLine": 1}}}]
            }]
        }]
    });
    let args_out = dir.join("process-args.txt");
    let body = format!(
        "#!/bin/sh\nenv > '{}'\npwd >> '{}'\ncat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' ' > '{}'\ncat <<'SARIF'\n{}\nSARIF\n",
        env_out.display(),
        env_out.display(),
        args_out.display(),
        serde_json::to_string(&sarif).expect("json")
    );
    std::fs::write(&script, body).expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    script
}

#[tokio::test]
async fn a_scan_finds_every_planted_secret_and_a_second_scan_marks_the_removed_one_fixed() {
    let scratch = Scratch::new("planted");
    let work = scratch.0.join("work");
    let scanner = sarif_scanner(&scratch.0);
    let scanners = json!([{ "name": "fake-sarif", "command": [scanner.display().to_string()], "timeout_seconds": 30 }]);
    let mut repo = TestRepo::init(scratch.0.join("backend.git")).expect("repo");
    let first = repo.commit(&planted_secrets(), "planted", &[]).expect("commit");
    repo.branch("main", &first).expect("branch");

    let env = env("scan_planted")
        .with_workers()
        .with_scan_worker()
        .var("SCAN_WORK_DIR", &work.display().to_string())
        .var("SCANNERS", &scanners.to_string())
        .start()
        .await;
    assert!(env.sim.set_repository(1, Some(repo.path().to_path_buf())));
    let (id, secret) = connect_and_track_with_secret(&env, "team-a", 1).await;

    let scan = scan_and_wait(&env, "team-a", &id, 1, json!({})).await;
    assert_eq!(scan["state"], "succeeded", "{scan}");
    assert_eq!(scan["sha"], first.as_str());
    assert_eq!(scan["ref"], "main");
    assert_eq!(scan["trigger"], "manual");
    let findings = scan["findings"].as_array().expect("findings").clone();
    let builtin: Vec<&Value> = findings.iter().filter(|f| f["scanner"] == "builtin").collect();
    for planted in PLANTED_SECRETS {
        assert!(
            builtin.iter().any(|f| f["path"] == planted.path && f["rule_id"] == planted.kind),
            "{} in {} not found: {findings:#?}",
            planted.kind,
            planted.path
        );
    }
    assert!(builtin.iter().all(|f| f["state"] == "new" && f["triage"] == "open"), "{findings:#?}");
    for f in &builtin {
        let redacted = f["secret"]["redacted"].as_str().expect("redacted");
        assert!(redacted.chars().filter(|c| *c != '…').count() <= 4, "{f}");
        assert!(f["secret"]["length"].as_u64().expect("length") > 4);
    }
    assert_eq!(scan["counts"]["new"].as_u64(), Some(findings.len() as u64));
    // The SARIF scanner's result sits next to the built-in ones; its out-of-checkout path is dropped.
    let mut sarif: Vec<(&str, &str, u64, bool)> = findings
        .iter()
        .filter(|f| f["scanner"] == "fake-sarif")
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap_or(""),
                f["path"].as_str().unwrap_or(""),
                f["line"].as_u64().unwrap_or(0),
                f["has_fix"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    sarif.sort();
    assert_eq!(sarif, vec![("demo.println", "src/main.rs", 2, true), ("demo.readme", "README.md", 1, false)]);
    let runs = scan["scanners"].as_array().expect("scanners");
    assert!(runs.iter().all(|r| r["state"] == "succeeded"), "{runs:?}");

    // The scanner ran in the checkout with nothing but PATH, HOME, LANG and TMPDIR.
    let scanner_env = std::fs::read_to_string(scratch.0.join("scanner-env.txt")).expect("scanner ran");
    for line in scanner_env.lines().filter(|l| l.contains('=')) {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            ["PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name),
            "scanner saw {line}"
        );
    }
    assert!(!scanner_env.contains(demo::API) && !scanner_env.contains("AWS_"), "{scanner_env}");
    // No process on the machine carries the token in its arguments (no git process exists at all).
    let args = std::fs::read_to_string(scratch.0.join("process-args.txt")).expect("process list");
    assert!(args.contains("fake-sarif-scanner.sh"), "the list holds the scanner itself: {args}");
    assert!(!args.contains(demo::API) && !args.contains("glpat-demo"), "token in some process's arguments");
    assert!(scanner_env.contains(&work.display().to_string()), "ran inside the job directory: {scanner_env}");
    // Every job directory is gone.
    assert_eq!(entries(&work), Vec::<String>::new());

    // A commit that removes one credential: it is fixed, the rest present.
    let second =
        repo.commit(&planted_secrets().without("src/notify.py"), "drop the slack token", &[&first]).expect("commit");
    repo.branch("main", &second).expect("branch");
    let rescan = scan_and_wait(&env, "team-a", &id, 1, json!({ "ref": "main" })).await;
    assert_eq!(rescan["state"], "succeeded", "{rescan}");
    assert_eq!(rescan["sha"], second.as_str());
    let again = rescan["findings"].as_array().expect("findings");
    let slack: Vec<&Value> = again.iter().filter(|f| f["rule_id"] == "slack-token").collect();
    assert_eq!(slack.len(), 1, "{again:#?}");
    assert_eq!(slack[0]["state"], "fixed");
    assert!(again.iter().filter(|f| f["rule_id"] != "slack-token").all(|f| f["state"] == "present"), "{again:#?}");
    assert_eq!(rescan["counts"]["fixed"], 1);
    assert_eq!(rescan["counts"]["new"], 0);
    // Fingerprints survive: the same findings carry the same fingerprints.
    let fp = |list: &[Value], rule: &str| {
        list.iter().find(|f| f["rule_id"] == rule).map(|f| f["fingerprint"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(fp(&findings, "gitlab-token"), fp(again, "gitlab-token"));

    // Triage: dismissed stays dismissed on the next read; another team can neither triage nor read.
    let target = fp(again, "gitlab-token").expect("fingerprint");
    let path = format!("/integrations/gitlab/{id}/findings/{target}");
    let body = json!({ "triage": "dismissed" }).to_string().into_bytes();
    let other = env.request("PATCH", Some("team-b"), &path, Some(("application/json", body.clone()))).await;
    assert_eq!(other.status, 404, "{}", other.raw);
    let bad = env
        .request(
            "PATCH",
            Some("team-a"),
            &path,
            Some(("application/json", json!({"triage": "ignored"}).to_string().into_bytes())),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"), "{}", bad.raw);
    let dismissed = env.request("PATCH", Some("team-a"), &path, Some(("application/json", body))).await;
    assert_eq!(dismissed.status, 200, "{}", dismissed.raw);
    assert_eq!(dismissed.body["triage"], "dismissed");
    let reread = wait_for_scan(&env, "team-a", &id, rescan["scan_id"].as_str().expect("id")).await;
    let row = reread["findings"].as_array().expect("f").iter().find(|f| f["fingerprint"] == target.as_str()).cloned();
    assert_eq!(row.expect("finding")["triage"], "dismissed");

    // GitLab's vulnerability report dismisses an exported finding (its identifier names the
    // fingerprint): the webhook turns that into the finding's triage.
    let aws = fp(again, "aws-access-key-id").expect("fingerprint");
    let mut event: Value =
        serde_json::from_str(include_str!("../../fixtures/webhooks/vulnerability.json")).expect("fixture");
    event["object_attributes"]["project_id"] = json!(1);
    event["object_attributes"]["state"] = json!("dismissed");
    event["object_attributes"]["identifiers"] = json!([{
        "name": "gitlab-connector finding", "external_type": "gitlab-connector", "external_id": aws, "url": null
    }]);
    let delivered = env
        .http
        .post(format!("{}/webhooks/gitlab/{id}", env.stack.url))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Vulnerability Hook")
        .header("x-gitlab-token", &secret)
        .header("idempotency-key", "vuln-1")
        .body(event.to_string())
        .send()
        .await
        .expect("local host answers");
    assert_eq!(delivered.status().as_u16(), 200);
    let reread = wait_for_scan(&env, "team-a", &id, rescan["scan_id"].as_str().expect("id")).await;
    let row = reread["findings"].as_array().expect("f").iter().find(|f| f["fingerprint"] == aws.as_str()).cloned();
    assert_eq!(row.expect("finding")["triage"], "dismissed");

    // Listing: newest first, filtered by project; another team sees nothing.
    let list = env.get("team-a", &format!("/integrations/gitlab/{id}/scans?project_id=1")).await;
    assert_eq!(list.status, 200, "{}", list.raw);
    let ids: Vec<&str> =
        list.body["items"].as_array().expect("items").iter().map(|s| s["scan_id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids, vec![rescan["scan_id"].as_str().unwrap_or(""), scan["scan_id"].as_str().unwrap_or("")]);
    assert!(list.body["items"][0].get("findings").is_none());
    let none = env.get("team-a", &format!("/integrations/gitlab/{id}/scans?project_id=2")).await;
    assert_eq!(none.body["items"], json!([]));
    for path in [
        format!("/integrations/gitlab/{id}/scans"),
        format!("/integrations/gitlab/{id}/scans/{}", scan["scan_id"].as_str().unwrap_or("")),
    ] {
        let reply = env.get("team-b", &path).await;
        assert_eq!((reply.status, reply.code()), (404, "not_found"), "{path}: {}", reply.raw);
    }
    let foreign = env.post("team-b", &format!("/integrations/gitlab/{id}/repositories/1/scans"), &json!({})).await;
    assert_eq!((foreign.status, foreign.code()), (404, "not_found"), "{}", foreign.raw);

    // No credential, planted or the token, in any response, log line, item or queue message.
    let mut haystack = env.replies.lock().expect("replies").join("\n");
    haystack.push_str(&env.logs.text());
    haystack.push_str(&format!("{:?}", env.all_items().await));
    haystack.push_str(&format!("{:?}", env.scan_messages().await));
    for planted in PLANTED_SECRETS.iter().filter(|p| p.kind != "private-key") {
        assert!(!haystack.contains(planted.secret), "{} leaked", planted.kind);
    }
    assert!(!haystack.contains(demo::API), "token leaked");
}

#[tokio::test]
async fn hostile_repositories_are_scanned_safely_or_refused_with_a_reason() {
    let scratch = Scratch::new("hostile");
    let work = scratch.0.join("work");
    let outside = scratch.0.join("outside-marker");
    let env = env("scan_hostile")
        .with_workers()
        .with_scan_worker()
        .var("SCAN_WORK_DIR", &work.display().to_string())
        .var("SCAN_MAX_FILES", "200")
        .var("SCAN_MAX_FILE_BYTES", "1048576")
        .start()
        .await;
    let id = connect_and_track(&env, "team-a", 1).await;

    // Links, a submodule, an LFS pointer and an oversized file: recorded, never followed or fetched.
    let mut odd = TestRepo::init(scratch.0.join("odd.git")).expect("repo");
    let tree = Tree::new()
        .file("README.md", "token: glpat-SIMfake0token0Abc123\n")
        .symlink("passwd", "/etc/passwd")
        .symlink("escape", &format!("../../../../{}", outside.display()))
        .submodule("vendor/lib", "https://gitlab.example.com/other/lib.git", &"ab".repeat(20))
        .lfs_pointer("assets/big.bin", b"sim-object")
        .huge_file("data/huge.bin", 2 * 1024 * 1024);
    let tip = odd.commit(&tree, "odd", &[]).expect("commit");
    odd.branch("main", &tip).expect("branch");
    env.sim.set_repository(1, Some(odd.path().to_path_buf()));
    let scan = scan_and_wait(&env, "team-a", &id, 1, json!({})).await;
    assert_eq!(scan["state"], "succeeded", "{scan}");
    let skipped: Vec<(String, String)> = scan["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| (s["path"].as_str().unwrap_or("").to_owned(), s["kind"].as_str().unwrap_or("").to_owned()))
        .collect();
    for expected in [
        ("passwd", "symlink"),
        ("escape", "symlink"),
        ("vendor/lib", "submodule"),
        ("assets/big.bin", "lfs_pointer"),
        ("data/huge.bin", "too_large"),
    ] {
        assert!(skipped.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} not in {skipped:?}");
    }
    let findings = scan["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "only the README's token: {findings:#?}");
    assert!(!outside.exists(), "something was written outside the job directory");
    assert_eq!(entries(&work), Vec::<String>::new());

    // A `.git` directory in the tree, and more files than allowed: refused, with the reason.
    let mut dotgit = TestRepo::init(scratch.0.join("dotgit.git")).expect("repo");
    let tip = dotgit
        .commit(
            &Tree::new().file("ok.txt", "fine").file("sub/.git/hooks/post-checkout", "#!/bin/sh\ntouch /tmp/pwned\n"),
            "x",
            &[],
        )
        .expect("commit");
    dotgit.branch("main", &tip).expect("branch");
    let mut many = TestRepo::init(scratch.0.join("many.git")).expect("repo");
    let tip = many.commit(&Tree::new().many_files("spam", 500), "many", &[]).expect("commit");
    many.branch("main", &tip).expect("branch");
    for (repo, expected) in [(&dotgit, "unsafe_repository"), (&many, "unsafe_repository")] {
        env.sim.set_repository(1, Some(repo.path().to_path_buf()));
        let scan = scan_and_wait(&env, "team-a", &id, 1, json!({})).await;
        assert_eq!(scan["state"], "failed", "{scan}");
        assert_eq!(scan["error"]["code"], expected, "{scan}");
        assert!(scan["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{scan}");
        assert_eq!(entries(&work), Vec::<String>::new());
    }
    assert!(!Path::new("/tmp/pwned").exists());

    // A project without a repository, an untracked project and bad input.
    let untracked = env.post("team-a", &format!("/integrations/gitlab/{id}/repositories/2/scans"), &json!({})).await;
    assert_eq!((untracked.status, untracked.code()), (409, "project_not_tracked"), "{}", untracked.raw);
    let unknown = env.post("team-a", &format!("/integrations/gitlab/{id}/repositories/999999/scans"), &json!({})).await;
    assert_eq!(unknown.status, 404, "{}", unknown.raw);
    let bad_ref =
        env.post("team-a", &format!("/integrations/gitlab/{id}/repositories/1/scans"), &json!({"ref": "a..b"})).await;
    assert_eq!((bad_ref.status, bad_ref.code()), (400, "invalid_request"), "{}", bad_ref.raw);
    let missing_branch = scan_and_wait(&env, "team-a", &id, 1, json!({"ref": "no-such-branch"})).await;
    assert_eq!(missing_branch["state"], "failed");
    assert_eq!(missing_branch["error"]["code"], "ref_not_found", "{missing_branch}");
}

pub(crate) fn sqs_event(bodies: &[(&str, Value)]) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| json!({ "messageId": id, "body": body.to_string(), "eventSource": "aws:sqs" }))
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("sqs event")
}

fn scan_request(team: &str, id: &str, sha: &str, at: &str, delivery: &str) -> Value {
    json!({
        "type": "scan_requested", "version": 1, "team_id": team, "integration_id": id, "project_id": 1,
        "target": { "kind": "merge_request", "iid": 1, "target_branch": "main" },
        "head_sha": sha, "trigger": "merge_request", "delivery_id": delivery, "requested_at": at,
    })
}

pub(crate) async fn mr_scans(env: &Env, team: &str, id: &str) -> Vec<Value> {
    let list = env.get(team, &format!("/integrations/gitlab/{id}/scans?project_id=1&limit=100")).await;
    assert_eq!(list.status, 200, "{}", list.raw);
    list.body["items"].as_array().expect("items").iter().filter(|s| s["trigger"] == "merge_request").cloned().collect()
}

#[tokio::test]
async fn merge_request_scans_run_once_per_commit_and_newer_heads_win() {
    let scratch = Scratch::new("mr");
    let mut repo = TestRepo::init(scratch.0.join("backend.git")).expect("repo");
    let base = repo.commit(&planted_secrets(), "planted", &[]).expect("commit");
    repo.branch("main", &base).expect("branch");
    let older = repo
        .commit(
            &planted_secrets().file("src/new.rs", "const T: &str = \"glpat-SIMfake0second0Tok99\";\n"),
            "leak",
            &[&base],
        )
        .expect("commit");
    let newer = repo.commit(&planted_secrets().without("src/notify.py"), "fix", &[&base]).expect("commit");
    let latest = repo.commit(&planted_secrets().without(".env"), "more", &[&newer]).expect("commit");
    repo.merge_request(1, &older).expect("mr ref");
    let env = env("scan_mr").with_workers().with_scan_worker().start().await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track(&env, "team-a", 1).await;
    let main = scan_and_wait(&env, "team-a", &id, 1, json!({})).await;
    assert_eq!(main["state"], "succeeded", "{main}");

    // GitLab delivers the merge request's opening twice (two deliveries, same commit): one scan.
    let sim = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(env.sim.ca_pem.as_bytes()).expect("ca")])
        .build()
        .expect("client");
    for _ in 0..2 {
        let raised = sim
            .post(format!("{}/-/sim/projects/1/events", env.sim.base_url()))
            .body(json!({ "kind": "merge_request", "iid": 1, "action": "open" }).to_string())
            .send()
            .await
            .expect("sim answers");
        assert!(raised.status().is_success());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let scan = loop {
        let scans = mr_scans(&env, "team-a", &id).await;
        if let Some(done) = scans.iter().find(|s| s["state"] == "succeeded") {
            break done.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no merge request scan: {scans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(scan["sha"], older.as_str());
    assert_eq!(scan["ref"], "refs/merge-requests/1/head");
    // Against the target branch's scan: the planted credentials are present, the new one is new.
    let full = wait_for_scan(&env, "team-a", &id, scan["scan_id"].as_str().expect("id")).await;
    let new: Vec<&Value> = full["findings"].as_array().expect("f").iter().filter(|f| f["state"] == "new").collect();
    assert_eq!(new.len(), 1, "{full}");
    assert_eq!(new[0]["path"], "src/new.rs");
    assert_eq!(full["counts"]["present"].as_u64(), main["counts"]["new"].as_u64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mr_scans(&env, "team-a", &id).await.len(), 1, "the second delivery made no second scan");

    // Requests handled out of order: the newer head first, then an older one, which is superseded;
    // a redelivery of the newer one is a duplicate; after a close, an older request is cancelled.
    let deps = env.stack.scan_deps.clone();
    let team = "team-a";
    let out = scan_worker::process_batch(
        &deps,
        sqs_event(&[("m1", scan_request(team, &id, &newer, "2030-01-01T00:00:10Z", "d-new"))]),
    )
    .await;
    assert!(out.batch_item_failures.is_empty());
    let out = scan_worker::process_batch(
        &deps,
        sqs_event(&[
            ("m2", scan_request(team, &id, &base, "2030-01-01T00:00:05Z", "d-old")),
            ("m3", scan_request(team, &id, &newer, "2030-01-01T00:00:10Z", "d-new-again")),
            ("m4", json!({ "type": "scan_requested", "version": 1, "token": "x" })),
        ]),
    )
    .await;
    let failed: Vec<&str> = out.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["m4"], "only the malformed message fails (to the dead-letter queue)");
    let states: Vec<(String, String)> = mr_scans(&env, team, &id)
        .await
        .iter()
        .map(|s| (s["sha"].as_str().unwrap_or("").to_owned(), s["state"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert!(states.contains(&(newer.clone(), "succeeded".into())), "{states:?}");
    assert!(states.contains(&(base.clone(), "superseded".into())), "{states:?}");
    assert_eq!(states.iter().filter(|(sha, _)| *sha == newer).count(), 1, "{states:?}");
    // The superseded commit becomes the head again (a revert): a later request for it is
    // scanned, not taken for a duplicate of the superseded scan.
    let again = scan_worker::process_batch(
        &deps,
        sqs_event(&[("m6", scan_request(team, &id, &base, "2030-01-01T00:00:20Z", "d-revert"))]),
    )
    .await;
    assert!(again.batch_item_failures.is_empty());
    let base_states: Vec<String> = mr_scans(&env, team, &id)
        .await
        .iter()
        .filter(|s| s["sha"] == base.as_str())
        .map(|s| s["state"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        base_states.contains(&"succeeded".to_owned()) && base_states.contains(&"superseded".to_owned()),
        "{base_states:?}"
    );
    let cancel = json!({
        "type": "scan_cancelled", "version": 1, "team_id": team, "integration_id": id, "project_id": 1,
        "merge_request_iid": 1, "reason": "closed", "requested_at": "2030-01-01T00:01:00Z",
    });
    let late = scan_request(team, &id, &latest, "2030-01-01T00:00:30Z", "d-late");
    let out = scan_worker::process_batch(&deps, sqs_event(&[("c1", cancel), ("m5", late)])).await;
    assert!(out.batch_item_failures.is_empty(), "{:?}", out.batch_item_failures);
    // The request from before the close, handled after it, is cancelled, not scanned.
    let all = mr_scans(&env, team, &id).await;
    let late: Vec<&Value> = all.iter().filter(|s| s["sha"] == latest.as_str()).collect();
    assert_eq!(late.len(), 1, "{all:?}");
    assert_eq!(late[0]["state"], "cancelled", "{all:?}");

    // A request naming another team's integration is dropped without touching it.
    let foreign = scan_request("team-b", &id, &newer, "2030-01-01T00:02:00Z", "d-foreign");
    let before = mr_scans(&env, team, &id).await.len();
    let out = scan_worker::process_batch(&deps, sqs_event(&[("f1", foreign)])).await;
    assert!(out.batch_item_failures.is_empty());
    assert_eq!(mr_scans(&env, team, &id).await.len(), before);
}

#[tokio::test]
async fn a_scan_that_runs_out_of_time_is_recorded_and_leaves_no_directory() {
    let scratch = Scratch::new("deadline");
    let work = scratch.0.join("work");
    let marker = scratch.0.join("scanner-started");
    let slow = scratch.0.join("slow-scanner.sh");
    std::fs::write(&slow, format!("#!/bin/sh\ntouch '{}'\nsleep 60\n", marker.display())).expect("script");
    let mut perms = std::fs::metadata(&slow).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&slow, perms).expect("chmod");
    let scanners = json!([{ "name": "slow", "command": [slow.display().to_string()], "timeout_seconds": 120 }]);
    let mut repo = TestRepo::init(scratch.0.join("backend.git")).expect("repo");
    let tip = repo.commit(&planted_secrets(), "planted", &[]).expect("commit");
    repo.branch("main", &tip).expect("branch");
    // The scan worker is not bound to the queue here: the test hands it the request with a
    // deadline, as the Lambda handler does with the invocation's.
    let env = env("scan_deadline")
        .with_workers()
        .var("SCAN_WORK_DIR", &work.display().to_string())
        .var("SCANNERS", &scanners.to_string())
        .start()
        .await;
    env.sim.set_repository(1, Some(repo.path().to_path_buf()));
    let id = connect_and_track(&env, "team-a", 1).await;
    let mut request = scan_request("team-a", &id, &tip, "2030-01-01T00:00:00Z", "d-deadline");
    request["target"] = json!({ "kind": "branch", "branch": "main" });
    request["trigger"] = json!("push");
    let started = tokio::time::Instant::now();
    let out = scan_worker::process_batch_until(
        &env.stack.scan_deps,
        sqs_event(&[("m1", request)]),
        Some(started + Duration::from_secs(3)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(20), "the deadline stopped the scan");
    assert!(out.batch_item_failures.is_empty());
    assert!(marker.exists(), "the scanner was running in the job directory");
    assert_eq!(entries(&work), Vec::<String>::new(), "the job directory is gone");
    let list = env.get("team-a", &format!("/integrations/gitlab/{id}/scans")).await;
    let scan = &list.body["items"][0];
    assert_eq!(scan["state"], "failed", "{}", list.raw);
    assert_eq!(scan["error"]["code"], "timeout", "{}", list.raw);
}

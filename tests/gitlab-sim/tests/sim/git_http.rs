//! Git smart HTTP against a running simulator with the real `git` client, and the repository
//! builder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use gitlab_sim::{
    AuthSeen, HistorySpec, PLANTED_SECRETS, RunningSim, SimConfig, SimToken, SimUser, TestRepo, TokenKind, Tree, demo,
    planted_secrets,
};
use reqwest::StatusCode;

use super::{client, header, sim_with};

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gitlab-sim-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, part: &str) -> PathBuf {
        self.0.join(part)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn basic(login: &str, token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{login}:{token}")))
}

/// The repository most tests serve: two commits on `main`, a feature branch and merge request 1.
struct Fixture {
    first: String,
    second: String,
    feature: String,
}

fn build_repo(dir: &Path) -> Fixture {
    let mut repo = TestRepo::init(dir).unwrap();
    let tree = Tree::new().file("README.md", "hello\n").file("src/lib.rs", "pub fn f() {}\n");
    let first = repo.commit(&tree, "first", &[]).unwrap();
    let second = repo.commit(&tree.clone().without("src/lib.rs"), "second", &[&first]).unwrap();
    let feature = repo.commit(&tree.clone().file("feature.txt", "new\n"), "feature", &[&second]).unwrap();
    repo.branch("main", &second).unwrap();
    repo.branch("feature", &feature).unwrap();
    repo.merge_request(1, &feature).unwrap();
    Fixture { first, second, feature }
}

/// The demo instance with `demo/backend` (id 1) served from `repo`.
async fn sim_with_repo(repo: &Path, change: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut config = SimConfig::default();
    config.projects[0].repo = Some(repo.to_path_buf());
    change(&mut config);
    sim_with(config).await
}

/// Runs the real `git` with a clean environment that trusts only the simulator's CA.
struct GitClient {
    dir: TempDir,
    ca: PathBuf,
}

impl GitClient {
    async fn new(sim: &RunningSim) -> Self {
        let dir = TempDir::new("client");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &sim.ca_pem).unwrap();
        let client = GitClient { dir, ca };
        client.run(&["init", "--quiet", "work"], None).await;
        client
    }

    /// `git <args>` in the work tree (or the client dir before `init`), with the token sent
    /// as `Authorization: Basic` through `http.extraHeader`, never in the URL.
    async fn output(&self, args: &[&str], auth: Option<&str>) -> std::process::Output {
        let work = self.dir.join("work");
        let mut command = tokio::process::Command::new("git");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.dir.join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", &self.ca)
            .current_dir(if work.exists() { work } else { self.dir.0.clone() })
            .args(["-c", "protocol.version=2"]);
        if let Some(auth) = auth {
            command.args(["-c", &format!("http.extraHeader=Authorization: {auth}")]);
        }
        command.args(args).output().await.unwrap()
    }

    async fn run(&self, args: &[&str], auth: Option<&str>) -> String {
        let output = self.output(args, auth).await;
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

#[tokio::test]
async fn git_fetches_one_commit_by_sha_and_by_merge_request_ref_over_protocol_v2() {
    let repos = TempDir::new("repos");
    let fixture = build_repo(&repos.join("backend.git"));
    let sim = sim_with_repo(&repos.join("backend.git"), |_| {}).await;
    let git = GitClient::new(&sim).await;
    let auth = basic("oauth2", demo::READ_REPO);
    let url = format!("{}/demo/backend.git", sim.base_url());
    git.run(&["remote", "add", "origin", &url], None).await;

    git.run(&["fetch", "--quiet", "--depth", "1", "origin", &fixture.second], Some(&auth)).await;
    assert_eq!(git.run(&["rev-parse", "FETCH_HEAD"], None).await, fixture.second);
    assert_eq!(git.run(&["rev-list", "--count", "FETCH_HEAD"], None).await, "1", "shallow: one commit");
    assert_eq!(git.run(&["ls-tree", "--name-only", "FETCH_HEAD"], None).await, "README.md");

    git.run(&["fetch", "--quiet", "--depth", "1", "origin", "refs/merge-requests/1/head"], Some(&auth)).await;
    assert_eq!(git.run(&["rev-parse", "FETCH_HEAD"], None).await, fixture.feature);
    assert!(git.output(&["cat-file", "-e", &fixture.first], None).await.status.code() != Some(0));

    let requests = sim.requests();
    let git_requests: Vec<_> = requests.iter().filter(|r| r.path.starts_with("/demo/backend.git/")).collect();
    assert!(git_requests.iter().any(|r| r.path.ends_with("/git-upload-pack") && r.method == "POST"));
    for request in &git_requests {
        assert_eq!(request.git_protocol.as_deref(), Some("version=2"), "{request:?}");
        assert_eq!(request.auth, AuthSeen::Basic);
    }
    assert!(sim.git_bytes_sent() > 0);
}

#[tokio::test]
async fn git_http_authenticates_like_gitlab() {
    let repos = TempDir::new("repos");
    build_repo(&repos.join("backend.git"));
    let outsider =
        SimUser { id: 900, username: "outsider".into(), name: "Outsider".into(), bot: false, is_admin: false };
    let sim = sim_with_repo(&repos.join("backend.git"), |config| {
        config.projects[0].members = Some(vec![101]);
        config.tokens.push(SimToken {
            token: "glpat-outsider-000000000001".into(),
            kind: TokenKind::Personal,
            scopes: vec!["read_repository".into()],
            expires_at: None,
            expired: false,
            revoked: false,
            user: outsider,
        });
        let readonly_user = config.tokens[0].clone();
        config.tokens.push(SimToken {
            token: "glpat-read-user-only-000001".into(),
            scopes: vec!["read_user".into()],
            ..readonly_user
        });
    })
    .await;
    let refs = format!("{}/demo/backend.git/info/refs?service=git-upload-pack", sim.base_url());
    let get = |auth: Option<String>| {
        let mut request = client(&sim).get(&refs);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };

    let response = get(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "www-authenticate"), "Basic realm=\"GitLab\"");
    assert!(response.text().await.unwrap().starts_with("HTTP Basic: Access denied."));

    let status = |auth: Option<String>| async { get(auth).await.unwrap().status() };
    assert_eq!(status(Some(basic("oauth2", "glpat-wrong"))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(Some(basic("oauth2", demo::EXPIRED))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(Some(basic("oauth2", demo::REVOKED))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(Some(format!("Bearer {}", demo::API))).await, StatusCode::UNAUTHORIZED);
    let private_token = client(&sim).get(&refs).header("PRIVATE-TOKEN", demo::API).send().await.unwrap();
    assert_eq!(private_token.status(), StatusCode::UNAUTHORIZED);

    // Any login works for personal tokens; `api`, `read_api` and `read_repository` may read.
    for token in [demo::API, demo::READONLY, demo::READ_REPO] {
        assert_eq!(status(Some(basic("anyone", token))).await, StatusCode::OK, "{token}");
    }
    let response = get(Some(basic("oauth2", "glpat-read-user-only-000001"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "You are not allowed to download code.");
    let response = get(Some(basic("oauth2", "glpat-outsider-000000000001"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.text().await.unwrap(),
        "The project you were looking for could not be found or you don't have permission to view it."
    );
    // OAuth tokens: any login on 17.8 (the default version).
    assert_eq!(status(Some(basic("oauth2", demo::OAUTH))).await, StatusCode::OK);
    assert_eq!(status(Some(basic("demo-user", demo::OAUTH))).await, StatusCode::OK);

    let response = client(&sim).head(&refs).header("authorization", basic("oauth2", demo::API)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Projects without a repository, unknown projects, anonymous reads of public projects.
    let url = |path: &str| format!("{}{path}", sim.base_url());
    let send = |path: String, auth: Option<String>| {
        let mut request = client(&sim).get(url(&path));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let response = send("/demo/frontend.git/info/refs?service=git-upload-pack".into(), Some(basic("x", demo::API)));
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.text().await.unwrap(), "A repository for this project does not exist yet.");
    let response = send("/demo/nothing.git/info/refs?service=git-upload-pack".into(), None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no credentials: 401 even for unknown projects");
    sim.set_repository(3, Some(repos.join("backend.git")));
    let response = send("/demo/docs.git/info/refs?service=git-upload-pack".into(), None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "public projects are readable anonymously");
    assert_eq!(header(&response, "content-type"), "application/x-git-upload-pack-advertisement");

    // Without `.git` GitLab redirects the handshake.
    let response = send("/demo/backend/info/refs?service=git-upload-pack".into(), None).await.unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&response, "location"), url("/demo/backend.git/info/refs?service=git-upload-pack"));
}

#[tokio::test]
async fn oauth_tokens_need_the_oauth2_login_before_17_2_and_bots_only_reach_their_projects() {
    let repos = TempDir::new("repos");
    build_repo(&repos.join("backend.git"));
    let sim = sim_with_repo(&repos.join("backend.git"), |config| {
        config.version = "17.1.0-ee".into();
        config.projects[0].members = Some(vec![101]);
    })
    .await;
    let refs = format!("{}/demo/backend.git/info/refs?service=git-upload-pack", sim.base_url());
    let status =
        |auth: String| async { client(&sim).get(&refs).header("authorization", auth).send().await.unwrap().status() };
    assert_eq!(status(basic("oauth2", demo::OAUTH)).await, StatusCode::OK);
    assert_eq!(status(basic("demo-user", demo::OAUTH)).await, StatusCode::UNAUTHORIZED);
    // The project bot (201) is no member of this project: its login fails outright.
    assert_eq!(status(basic("bot", demo::PROJECT_BOT)).await, StatusCode::UNAUTHORIZED);
    sim.update_project(1, |p| p.members = Some(vec![101, 201]));
    assert_eq!(status(basic("bot", demo::PROJECT_BOT)).await, StatusCode::OK);
}

#[tokio::test]
async fn pushes_are_refused() {
    let repos = TempDir::new("repos");
    let fixture = build_repo(&repos.join("backend.git"));
    let sim = sim_with_repo(&repos.join("backend.git"), |_| {}).await;
    let git = GitClient::new(&sim).await;
    let url = format!("{}/demo/backend.git", sim.base_url());
    git.run(&["remote", "add", "origin", &url], None).await;
    git.run(&["fetch", "--quiet", "origin", "main"], Some(&basic("oauth2", demo::API))).await;
    git.run(&["update-ref", "refs/heads/main", "FETCH_HEAD"], None).await;

    let output = git.output(&["push", "origin", "main:refs/heads/pushed"], Some(&basic("oauth2", demo::API))).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("You can't push code to a read-only GitLab instance."), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    let output = git.output(&["push", "origin", "main:refs/heads/x"], Some(&basic("oauth2", demo::READ_REPO))).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("You are not allowed to upload code."));

    let repo = format!("--git-dir={}", repos.join("backend.git").display());
    let after = std::process::Command::new("git").args([repo.as_str(), "for-each-ref"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&after.stdout).contains("pushed"));
    assert!(String::from_utf8_lossy(&after.stdout).contains(&fixture.second));
}

fn ls_tree(repo: &Path, commit: &str) -> String {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["ls-tree", "-r", "--full-tree", commit])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn builder_writes_every_kind_of_entry_with_stable_ids() {
    let dir = TempDir::new("builder");
    let gitlink = "0123456789abcdef0123456789abcdef01234567";
    let tree = Tree::new()
        .file("README.md", "hi\n")
        .executable("bin/run.sh", "#!/bin/sh\n")
        .symlink("abs", "/etc/passwd")
        .symlink("up", "../../outside")
        .submodule("vendor/lib", "https://gitlab.example.com/lib.git", gitlink)
        .lfs_pointer("assets/big.bin", &[7u8; 123])
        .huge_file("huge.bin", 3 * 1024 * 1024)
        .many_files("many", 500)
        .file("sub/.git/hooks/post-checkout", "#!/bin/sh\necho owned\n")
        .file(".GIT/config", "[core]\n");
    let build = |path: PathBuf| {
        let mut repo = TestRepo::init(path).unwrap();
        let first = repo.commit(&tree, "everything", &[]).unwrap();
        let second = repo.commit(&tree.clone().without("README.md"), "less", &[&first]).unwrap();
        repo.branch("trunk", &second).unwrap();
        repo.set_head("trunk").unwrap();
        repo.merge_request(7, &first).unwrap();
        (first, second)
    };
    let (first, second) = build(dir.join("a.git"));
    assert_eq!(build(dir.join("b.git")), (first.clone(), second.clone()), "same calls, same ids");
    assert!(first.len() == 40 && first.chars().all(|c| c.is_ascii_hexdigit()));

    let listing = ls_tree(&dir.join("a.git"), &first);
    for expected in [
        "100755 blob ",
        "\tbin/run.sh",
        "120000 blob ",
        "\tabs",
        "\tup",
        "160000 commit ",
        "\tvendor/lib",
        "\t.gitmodules",
        "\tsub/.git/hooks/post-checkout",
        "\t.GIT/config",
        "\tmany/file-00499.txt",
        "\thuge.bin",
    ] {
        assert!(listing.contains(expected), "{expected} missing");
    }
    assert_eq!(listing.lines().count(), tree.len() + 1, "entries plus .gitmodules");
    assert!(!ls_tree(&dir.join("a.git"), &second).contains("README.md"));
    let show = |spec: &str| {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(dir.join("a.git"))
            .args(["cat-file", "-p", spec])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(show(&format!("{first}:abs")), "/etc/passwd");
    assert!(show(&format!("{first}:assets/big.bin")).ends_with("size 123\n"));
    let head = std::fs::read_to_string(dir.join("a.git").join("HEAD")).unwrap();
    assert_eq!(head.trim(), "ref: refs/heads/trunk");
    let refs =
        std::process::Command::new("git").arg("--git-dir").arg(dir.join("a.git")).arg("for-each-ref").output().unwrap();
    let refs = String::from_utf8_lossy(&refs.stdout).into_owned();
    assert!(refs.contains(&format!("{first} commit\trefs/merge-requests/7/head")), "{refs}");
    assert!(!refs.contains("scratch"), "{refs}");
}

#[test]
fn planted_secrets_are_where_the_list_says() {
    let tree = planted_secrets();
    assert!(PLANTED_SECRETS.len() >= 9);
    let dir = TempDir::new("planted");
    let mut repo = TestRepo::init(dir.join("r.git")).unwrap();
    let commit = repo.commit(&tree, "secrets", &[]).unwrap();
    for planted in PLANTED_SECRETS {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(dir.join("r.git"))
            .args(["cat-file", "-p", &format!("{commit}:{}", planted.path)])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains(planted.secret), "{planted:?}");
    }
}

#[tokio::test]
async fn a_shallow_fetch_of_a_long_history_moves_a_fraction_of_a_full_one() {
    let repos = TempDir::new("history");
    let mut repo = TestRepo::init(repos.join("history.git")).unwrap();
    let spec = HistorySpec { commits: 60, files: 8, file_size: 32 * 1024, changes_per_commit: 1, seed: 3 };
    let history = repo.generate_history("main", &spec).unwrap();
    assert_eq!(history.tip_tree_bytes, 8 * 32 * 1024);
    assert_eq!(history.history_bytes, 68 * 32 * 1024);
    let sim = sim_with_repo(repo.path(), |_| {}).await;
    let auth = basic("oauth2", demo::READ_REPO);
    let url = format!("{}/demo/backend.git", sim.base_url());

    let shallow = GitClient::new(&sim).await;
    shallow.run(&["fetch", "--quiet", "--depth", "1", &url, &history.tip], Some(&auth)).await;
    let shallow_bytes = sim.git_bytes_sent();
    let full = GitClient::new(&sim).await;
    full.run(&["fetch", "--quiet", &url, "main"], Some(&auth)).await;
    assert_eq!(full.run(&["rev-parse", "FETCH_HEAD"], None).await, history.tip);
    assert_eq!(full.run(&["rev-list", "--count", "FETCH_HEAD"], None).await, "61");
    let full_bytes = sim.git_bytes_sent() - shallow_bytes;
    assert!(full_bytes > history.history_bytes, "{full_bytes}");
    assert!(shallow_bytes < history.tip_tree_bytes + 64 * 1024, "{shallow_bytes}");
    assert!(full_bytes > 5 * shallow_bytes);
}

#[tokio::test]
async fn member_lists_limit_the_api_like_git() {
    let outsider =
        SimUser { id: 900, username: "outsider".into(), name: "Outsider".into(), bot: false, is_admin: false };
    let mut config = SimConfig::default();
    config.projects[0].members = Some(vec![101]);
    config.tokens.push(SimToken {
        token: "glpat-outsider-000000000001".into(),
        kind: TokenKind::Personal,
        scopes: vec!["read_api".into()],
        expires_at: None,
        expired: false,
        revoked: false,
        user: outsider,
    });
    let sim = sim_with(config).await;
    let ids = |token: &'static str| {
        let url = format!("{}/api/v4/projects?order_by=id&sort=asc", sim.base_url());
        let request = client(&sim).get(url).header("PRIVATE-TOKEN", token).send();
        async move {
            let body = super::json_of(request.await.unwrap()).await;
            body.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(demo::API).await, vec![1, 2, 3]);
    // Private project 1 is hidden; internal 2 and public 3 stay visible to any signed-in user.
    assert_eq!(ids("glpat-outsider-000000000001").await, vec![2, 3]);
    let one = |token: &str| {
        client(&sim).get(format!("{}/api/v4/projects/1", sim.base_url())).header("PRIVATE-TOKEN", token).send()
    };
    assert_eq!(one("glpat-outsider-000000000001").await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(one(demo::SUDO).await.unwrap().status(), StatusCode::OK, "administrators see everything");
}
